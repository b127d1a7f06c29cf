"""The factory floor: what every bead of one build shares (ledger, refinery, output, slots)."""
from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gastown import desk, worktrees
from gastown import ledger as ledger_mod
from gastown.bead import Bead, State
from gastown.console import Console, RunStats
from gastown.costs import CostBook
from gastown.desk import Desk
from gastown.ledger import Ledger
from gastown.mayor import Plan
from gastown.refinery import Refinery

RATE_LIMIT_MAX = 600.0


def _backoff() -> float:
    """The first wait after a rate limit; GAS_RATE_LIMIT_BACKOFF (seconds) sets it."""
    return float(os.environ.get("GAS_RATE_LIMIT_BACKOFF", "30"))


class Slots:
    """The concurrency cap as polecat numbers 1..cap (log lines read `[Polecat-03]`). A free
    slot goes to the waiting bead with the longest remaining path, not the first in line:
    doit hands ready beads over in FIFO order, and this gate reorders them.

    A bead gives its slot back once approved, while it still has to merge. When that merge is
    all a dependent waits for and the dependent outranks every waiting bead, the slot is held
    for it (`pass_on`) instead of going to a lesser bead that happens to be ready in between:
    on a chain of beads that gap would otherwise cost a slot's whole next bead, link by link.
    """

    def __init__(self, cap: int, priority: Mapping[str, float] | None = None) -> None:
        self.cap = cap
        self.priority: Mapping[str, float] = priority or {}
        self.free = list(range(1, cap + 1))
        self.waiting: list[tuple[float, int, str]] = []
        self.order = itertools.count()
        self.cond = threading.Condition()
        self.kids: dict[str, list[str]] = {}
        self.unmerged: dict[str, set[str]] = {}  # bead -> its needs in this run not merged yet
        self.held: dict[str, tuple[int, str]] = {}  # heir -> (slot, the bead merging for it)

    def plan(self, priority: Mapping[str, float], needs: Mapping[str, Iterable[str]]) -> None:
        """The beads of this run: their priorities and their needs that also run."""
        with self.cond:
            self.priority = priority
            self.unmerged = {bead: set(ns) for bead, ns in needs.items()}
            self.kids = {bead: [] for bead in needs}
            for bead, ns in self.unmerged.items():
                for need in ns:
                    self.kids.setdefault(need, []).append(bead)

    def take(self, bead_id: str) -> int:
        with self.cond:
            if bead_id in self.held:
                return self.held.pop(bead_id)[0]
            entry = (-self.priority.get(bead_id, 0.0), next(self.order), bead_id)
            heapq.heappush(self.waiting, entry)
            self.cond.notify_all()  # lets observers see the queue change
            self.cond.wait_for(lambda: bool(self.free) and self.waiting[0] == entry)
            heapq.heappop(self.waiting)
            slot = heapq.heappop(self.free)
            self.cond.notify_all()
            return slot

    def give(self, slot: int) -> None:
        with self.cond:
            heapq.heappush(self.free, slot)
            self.cond.notify_all()

    def pass_on(self, slot: int, bead_id: str) -> None:
        """`bead_id` was approved and goes on to merge: its slot is held for the dependent
        its merge makes ready when that one outranks every waiting bead; else it is free."""
        with self.cond:
            heir = self._heir(bead_id)
            if heir is None:
                heapq.heappush(self.free, slot)
            else:
                self.held[heir] = (slot, bead_id)
            self.cond.notify_all()

    def settle(self, bead_id: str, merged: bool) -> None:
        """`bead_id`'s merge is over: a slot held for its heir stays held only if it merged."""
        with self.cond:
            if merged:
                for kid in self.kids.get(bead_id, ()):
                    self.unmerged.get(kid, set()).discard(bead_id)
            else:
                for heir in [h for h, (_, by) in self.held.items() if by == bead_id]:
                    heapq.heappush(self.free, self.held.pop(heir)[0])
            self.cond.notify_all()

    def forfeit(self, bead_id: str) -> None:
        """`bead_id` will not take a slot after all (draining, budget): free one held for it."""
        with self.cond:
            if bead_id in self.held:
                heapq.heappush(self.free, self.held.pop(bead_id)[0])
                self.cond.notify_all()

    def _heir(self, bead_id: str) -> str | None:
        ready_on_merge = [kid for kid in self.kids.get(bead_id, ())
                          if self.unmerged.get(kid) == {bead_id} and kid not in self.held]
        if not ready_on_merge:
            return None
        heir = max(ready_on_merge, key=lambda kid: self.priority.get(kid, 0.0))
        best_waiting = -self.waiting[0][0] if self.waiting else float("-inf")
        return heir if self.priority.get(heir, 0.0) > best_waiting else None


@dataclass
class Floor:
    root: Path
    plan: Plan
    ledger: Ledger
    refinery: Refinery
    console: Console
    env: dict[str, str]
    slots: Slots
    stats: RunStats = field(default_factory=RunStats)
    costs: CostBook = field(default_factory=CostBook)
    stopping: threading.Event = field(default_factory=threading.Event)  # kill running beads
    draining: threading.Event = field(default_factory=threading.Event)  # start no more beads
    desk: Desk = field(default_factory=Desk)  # gastown's own work, a few beads at a time

    def wait_out_rate_limit(self, bead: Bead, actor: str, reason: str | None, waited: int,
                            started: float, timeout: float | None) -> bool:
        """Back off after a rate limit; False when the role's timeout or a stop ends the wait."""
        delay = min(RATE_LIMIT_MAX, _backoff() * 2 ** waited)
        if timeout is not None and time.monotonic() - started + delay > timeout:
            return False
        self.console.say(actor, f"WAIT {bead.id}: rate limited ({reason}); "
                                f"trying again in {delay:g}s")
        with desk.away():
            return not self.stopping.wait(delay)

    def log_file(self, bead: Bead) -> Path:
        return worktrees.state_dir(self.root) / "logs" / f"{bead.id}.log"

    def prompt_dir(self, bead: Bead) -> Path:
        path = worktrees.state_dir(self.root) / "prompts" / bead.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, bead: Bead, state: State, note: str | None = None,
               **fields: Any) -> dict[str, Any]:
        """One ledger transition, queued for the ledger's writer (a group commit on the ledger
        branch soon after; the build flushes before it ends)."""
        record = ledger_mod.transition(
            self.ledger.get(bead.id), bead_id=bead.id, state=state.value, note=note,
            backlog=bead.backlog, title=bead.title, fingerprint=bead.fingerprint, **fields)
        message = f"{bead.id}: {state.value}" + (f" ({note})" if note else "")
        self.ledger.post(record, message)
        self.console.transition(bead.id, state.value, note)
        return record
