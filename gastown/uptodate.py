"""Which beads a build runs, and why: decided from the ledger, never from doit's cache."""
from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gastown.bead import Bead, State
from gastown.graph import dag
from gastown.mayor import Plan


@dataclass
class RunSet:
    selected: set[str]
    order: list[str]  # beads to run, dispatch order
    reasons: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)  # selected and up to date


_MERGED = State.MERGED.value  # an enum member's .value is a property: slow 20,000 times over
_FAILED = (State.FAILED.value, State.BLOCKED.value)


def why(bead: Bead, record: Mapping[str, Any] | None, forced: bool) -> str | None:
    """The reason to run `bead`, or None when it is up to date."""
    if forced:
        return "forced"
    if record is None:
        return "never built"
    if record.get("fingerprint") != bead.fingerprint:
        return "definition changed"
    state = record.get("state")
    if state == _MERGED:
        return None
    if state in _FAILED:
        return f"{state} before: {record.get('reason') or 'no reason recorded'}"
    return f"unfinished ({state}) in an earlier build"


def plan_run(plan: Plan, records: Mapping[str, Mapping[str, Any]], *,
             only: Sequence[str] = (), force: Sequence[str] = ()) -> RunSet:
    shown = plan.gasfile.path.name
    selected = dag.select_beads(plan.beads, only, file=shown) if only else set(plan.beads)
    reasons: dict[str, str] = {}
    for bead_id in selected:
        forced = bool(force) and any(fnmatch.fnmatchcase(bead_id, p) for p in force)
        reason = why(plan.beads[bead_id], records.get(bead_id), forced)
        if reason is not None:
            reasons[bead_id] = reason
    order = dag.dispatch_order(plan.beads, reasons)
    return RunSet(selected, order, reasons, selected - set(reasons))


def ready_now(plan: Plan, run: RunSet) -> int:
    """Beads to run whose needs are all merged already."""
    pending = set(run.order)
    return sum(1 for b in run.order if not any(n in pending for n in plan.beads[b].needs))
