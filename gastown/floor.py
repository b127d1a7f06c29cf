"""The factory floor: what every bead of one build shares (ledger, refinery, output, slots)."""
from __future__ import annotations

import os
import queue
import threading
import time
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
    """Polecat numbers 1..cap, so log lines read `[Polecat-03]` as in the article."""

    def __init__(self, cap: int) -> None:
        self.free: queue.PriorityQueue[int] = queue.PriorityQueue()
        for n in range(1, cap + 1):
            self.free.put(n)

    def take(self) -> int:
        return self.free.get()

    def give(self, n: int) -> None:
        self.free.put(n)


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
