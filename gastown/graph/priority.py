"""Dispatch priority: the longest remaining path first, weighted by past durations if known."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gastown.bead import Bead
from gastown.graph.dag import remaining_paths


def durations(records: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Seconds each bead's last attempt took (polecat + witness), where the ledger has it."""
    found = {}
    for bead_id, record in records.items():
        last = (record.get("attempts") or [{}])[-1]
        seconds = float(last.get("polecat_s", 0.0)) + float(last.get("witness_s", 0.0))
        if seconds > 0:
            found[bead_id] = seconds
    return found


def priorities(beads: Mapping[str, Bead], keep: Iterable[str],
               records: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Remaining path length of each bead to run: past seconds where known, the median of
    those (or 1) for the rest, so one unknown bead does not outweigh a known long chain."""
    keep = set(keep)
    past = durations(records)
    known = [past[b] for b in keep if b in past]
    default = _median(known) if known else 1.0
    weight = {b: past.get(b, default) for b in keep}
    return remaining_paths(beads, keep, weight)


def _median(values: list[float]) -> float:
    """statistics.median, without importing statistics (and fractions) for it."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
