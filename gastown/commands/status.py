"""`gas status`: every bead of the Gasfile and where it stands, read from the ledger."""
from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from gastown.commands.common import add_gasfile_option, load
from gastown.uptodate import why


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="every bead and its state, from the ledger")
    add_gasfile_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load(gasfile=args.gasfile, read_ledger=True)
    records = loaded.ledger.load()
    rows = [_row(bead, records.get(bead_id)) for bead_id, bead in loaded.plan.beads.items()]
    if args.json:
        print(json.dumps({"beads": rows}, indent=2))
    else:
        _print_table(rows)
    return 0


def _row(bead: Any, record: dict[str, Any] | None) -> dict[str, Any]:
    record = record or {}
    return {
        "id": bead.id, "backlog": bead.backlog, "title": bead.title,
        "state": record.get("state", "pending"),
        "up_to_date": why(bead, record or None, False) is None,
        "attempts": len(record.get("attempts", [])),
        "merge_commit": record.get("merge_commit"),
        "reason": record.get("reason"),
        "updated": record.get("updated"),
    }


def _print_table(rows: list[dict[str, Any]]) -> None:
    width = max([len(r["id"]) for r in rows] + [4])
    for r in rows:
        stale = "" if r["up_to_date"] or r["state"] != "merged" else " (definition changed)"
        reason = f"  {r['reason']}" if r["reason"] and r["state"] != "merged" else ""
        print(f"{r['id']:<{width}}  {r['state']:<11}{stale}{reason}")
    counts = Counter(r["state"] for r in rows)
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
