"""The factory floor: what every bead of one build shares (ledger, refinery, output, slots)."""
from __future__ import annotations

import queue
import threading
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
