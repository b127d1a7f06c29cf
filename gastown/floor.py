"""The factory floor: what every bead of one build shares (ledger, refinery, output, slots)."""
from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gastown import ledger as ledger_mod
from gastown import worktrees
from gastown.bead import Bead, State
from gastown.console import Console, RunStats
from gastown.costs import CostBook
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
    doit hands ready beads over in FIFO order, and this gate reorders them."""

    def __init__(self, cap: int, priority: Mapping[str, float] | None = None) -> None:
        self.cap = cap
        self.priority = priority or {}
        self.free = list(range(1, cap + 1))
        self.waiting: list[tuple[float, int, str]] = []
        self.order = itertools.count()
        self.cond = threading.Condition()

    def take(self, bead_id: str) -> int:
        with self.cond:
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

    def wait_out_rate_limit(self, bead: Bead, actor: str, reason: str | None, waited: int,
                            started: float, timeout: float | None) -> bool:
        """Back off after a rate limit; False when the role's timeout or a stop ends the wait."""
        delay = min(RATE_LIMIT_MAX, _backoff() * 2 ** waited)
        if timeout is not None and time.monotonic() - started + delay > timeout:
            return False
        self.console.say(actor, f"WAIT {bead.id}: rate limited ({reason}); "
                                f"trying again in {delay:g}s")
        return not self.stopping.wait(delay)

    def log_file(self, bead: Bead) -> Path:
        return worktrees.state_dir(self.root) / "logs" / f"{bead.id}.log"

    def prompt_dir(self, bead: Bead) -> Path:
        path = worktrees.state_dir(self.root) / "prompts" / bead.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, bead: Bead, state: State, note: str | None = None,
               **fields: Any) -> dict[str, Any]:
        """One ledger transition: one commit on the ledger branch."""
        record = ledger_mod.transition(
            self.ledger.get(bead.id), bead_id=bead.id, state=state.value, note=note,
            backlog=bead.backlog, title=bead.title, fingerprint=bead.fingerprint, **fields)
        message = f"{bead.id}: {state.value}" + (f" ({note})" if note else "")
        self.ledger.put(record, message)
        self.console.transition(bead.id, state.value, note)
        return record
