"""`gas validate`: load and compile the Gasfile, run nothing, write nothing."""
from __future__ import annotations

import argparse

from gastown.commands.common import add_gasfile_option, load


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("validate", help="check the Gasfile and its backlogs, run nothing")
    add_gasfile_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load(gasfile=args.gasfile)
    counts = ", ".join(f"{name}: {n}" for name, n in loaded.plan.per_backlog().items())
    print(f"{loaded.gasfile.path.name} is valid: {len(loaded.plan.beads)} beads ({counts}), "
          f"{loaded.plan.graph.number_of_edges()} dependencies")
    return 0
