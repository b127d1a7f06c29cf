"""`gas log [BEAD]`: the ledger's commit log, or one bead's transitions and attempts."""
from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gastown import costs
from gastown.commands.common import Loaded, add_gasfile_option, load
from gastown.errors import GasError
from gastown.ledger import Ledger, LedgerError

Record = dict[str, Any]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("log", help="the ledger's log, or one bead's history and attempts")
    add_gasfile_option(p)
    p.add_argument("bead", nargs="?", metavar="BEAD", help="show this bead's history")
    p.add_argument("-n", "--max-count", type=int, metavar="N",
                   help="at most N entries (the newest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.max_count is not None and args.max_count < 1:
        raise GasError(f"-n {args.max_count}: give at least 1")
    loaded = load(gasfile=args.gasfile)
    ledger = Ledger(loaded.root, loaded.gasfile.project.ledger)
    if args.bead is None:
        commits = ledger.history(limit=args.max_count)
        _emit(args.json, {"ledger": ledger.branch, "commits": commits},
              _commit_lines(ledger.branch, commits))
        return 0
    record = find_record(loaded, read_records(ledger), args.bead)
    view = bead_view(args.bead, record, ledger.history(args.bead), args.max_count)
    _emit(args.json, view, bead_lines(view))
    return 0


def find_record(loaded: Loaded, records: Mapping[str, Record], bead_id: str) -> Record | None:
    """The bead's ledger record (None: in the Gasfile, never built); unknown ids are bad input."""
    if bead_id in records:
        return records[bead_id]
    if bead_id in loaded.plan.beads:
        return None
    known = sorted({*loaded.plan.beads, *records})
    close = difflib.get_close_matches(bead_id, known, n=3, cutoff=0.5)
    hint = ("did you mean " + " or ".join(repr(c) for c in close) + "?" if close
            else "`gas status` lists every bead")
    raise GasError(f"no bead {bead_id!r} in {loaded.gasfile.display} or the ledger", hint=hint)


def read_records(ledger: Ledger) -> dict[str, Record]:
    try:
        return ledger.load()
    except LedgerError as exc:
        raise GasError(str(exc), hint="`gas doctor` checks the ledger branch") from None


def _emit(as_json: bool, value: Any, lines: Iterable[str]) -> None:
    if as_json:
        print(json.dumps(value, indent=2))
    else:
        for line in lines:
            print(line)


def when(iso: str | None) -> str:
    """A ledger time (ISO 8601 UTC) as `YYYY-MM-DD HH:MM:SS`."""
    return iso[:19].replace("T", " ") if iso else "?"


# -- the ledger's commit log ------------------------------------------------------------------

def _commit_lines(branch: str, commits: list[dict[str, str]]) -> list[str]:
    if not commits:
        return [f"no ledger yet: {branch} does not exist (no build has run)"]
    return [f"{when(c['at'])}  {c['commit'][:10]}  {c['message'].splitlines()[0]}"
            for c in commits]


# -- one bead ---------------------------------------------------------------------------------

def bead_view(bead_id: str, record: Record | None, commits: list[dict[str, str]],
              limit: int | None) -> dict[str, Any]:
    record = record or {}
    history = record.get("history", [])
    return {
        "id": bead_id, "title": record.get("title"), "backlog": record.get("backlog"),
        "state": record.get("state", "pending"), "reason": record.get("reason"),
        "merge_commit": record.get("merge_commit"), "into": record.get("into"),
        "history": history[-limit:] if limit else history,
        "attempts": [_attempt(a) for a in record.get("attempts", [])],
        "cost": record.get("cost") or {}, "timings": record.get("timings") or {},
        "commits": commits[:limit] if limit else commits,
    }


def _attempt(attempt: Record) -> Record:
    return {**attempt, "duration_s": duration(attempt.get("started"), attempt.get("ended"))}


def duration(started: str | None, ended: str | None) -> float | None:
    if not started or not ended:
        return None
    delta = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
    return round(delta.total_seconds(), 3)


def bead_lines(view: dict[str, Any]) -> list[str]:
    title = f": {view['title']}" if view["title"] else ""
    backlog = f" (backlog {view['backlog']})" if view["backlog"] else ""
    lines = [f"{view['id']}{backlog}{title}", *_state_lines(view)]
    if not view["history"]:
        return [*lines, "no ledger record: never built"]
    lines += ["", "history (UTC)"]
    lines += [f"  {when(h.get('at'))}  {h.get('state', '?'):<11} {h.get('note') or ''}".rstrip()
              for h in view["history"]]
    if view["attempts"]:
        lines += ["", "attempts"]
        lines += [line for a in view["attempts"] for line in _attempt_lines(a)]
    return lines + _money_lines(view)


def _state_lines(view: dict[str, Any]) -> list[str]:
    state = view["state"]
    if state == "merged" and view["merge_commit"]:
        return [f"state: merged into {view['into']} at {view['merge_commit'][:12]}"]
    return [f"state: {state}", *([f"reason: {view['reason']}"] if view["reason"] else [])]


def _attempt_lines(attempt: Record) -> list[str]:
    head = (f"  #{attempt.get('n', '?')}  {attempt.get('polecat') or '-'}  "
            f"{attempt.get('outcome') or 'unfinished'}  {_took(attempt)}")
    reason = f"     reason: {attempt['reason']}".rstrip() if attempt.get("reason") else None
    usage = f"     usage: {usage_text(attempt['usage'])}" if attempt.get("usage") else None
    return [line for line in (head, reason, usage) if line]


def _took(attempt: Record) -> str:
    """`0.075s (polecat 0.019s, witness 0.003s)`"""
    total = attempt.get("duration_s")
    parts = [f"{role} {seconds(attempt[key])}" for role, key in
             (("polecat", "polecat_s"), ("witness", "witness_s")) if attempt.get(key) is not None]
    shown = seconds(total) if total is not None else "?"
    return f"{shown} ({', '.join(parts)})" if parts else shown


def seconds(value: float) -> str:
    return f"{value:.3f}s" if value < 10 else f"{value:.1f}s"


def usage_text(by_role: Mapping[str, Mapping[str, Any]]) -> str:
    """`polecat (model) 1,200 in, 300 out, $0.0300; witness ...`"""
    parts = []
    for role, usage in sorted(by_role.items()):
        bits = [f"{usage[k]:,} {label}" for k, label in
                (("input_tokens", "in"), ("output_tokens", "out")) if usage.get(k) is not None]
        if usage.get("usd") is not None:
            bits.append(costs.usd(usage["usd"]))
        model = f" ({usage['model']})" if usage.get("model") else ""
        parts.append(f"{role}{model} {', '.join(bits) or '-'}")
    return "; ".join(parts)


def _money_lines(view: dict[str, Any]) -> list[str]:
    lines = []
    if view["cost"]:
        total = sum(c.get("usd", 0.0) for c in view["cost"].values())
        lines.append(f"cost: {usage_text(view['cost'])} (total {costs.usd(total)})")
    if view["timings"]:
        lines.append("timings: " + ", ".join(f"{k.removesuffix('_s')} {seconds(v)}"
                                             for k, v in sorted(view["timings"].items())))
    return ["", *lines] if lines else []
