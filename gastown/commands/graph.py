"""`gas graph`: the bead DAG as dot, mermaid, ascii or json, coloured by ledger state."""
from __future__ import annotations

import argparse

from gastown.commands.common import add_gasfile_option, load
from gastown.graph import dag
from gastown.graph.render import FORMATS, render
from gastown.ledger import Ledger


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("graph", help="show the bead DAG")
    add_gasfile_option(p)
    p.add_argument("--format", choices=FORMATS, default="dot")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--only", action="append", default=[], metavar="SEL",
                   help="show this selection and what it needs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load(gasfile=args.gasfile)
    graph = loaded.plan.graph
    if args.only:
        graph = graph.subgraph(dag.select(graph, args.only, file=loaded.gasfile.path.name))
    records = Ledger(loaded.root, loaded.gasfile.project.ledger).load()
    states = {bead_id: rec.get("state", "pending") for bead_id, rec in records.items()}
    print(render(graph, "json" if args.json else args.format, states))
    return 0
