"""`gas validate`: load and compile the Gasfile, run nothing, write nothing."""
from __future__ import annotations

import argparse
import json

from gastown.commands.common import add_gasfile_option, load


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("validate", help="check the Gasfile and its backlogs, run nothing")
    add_gasfile_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load(gasfile=args.gasfile)
    plan = loaded.plan
    summary = {"gasfile": loaded.gasfile.display, "valid": True, "beads": len(plan.beads),
               "backlogs": plan.per_backlog(), "dependencies": plan.graph.number_of_edges()}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    counts = ", ".join(f"{name}: {n}" for name, n in plan.per_backlog().items())
    print(f"{loaded.gasfile.path.name} is valid: {len(plan.beads)} beads ({counts}), "
          f"{summary['dependencies']} dependencies")
    return 0
