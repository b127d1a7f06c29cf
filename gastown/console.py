"""What a build prints: one line per step as in the article, and the end summary."""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO


class Console:
    """Thread-safe plain output: `HH:MM:SS [Actor] TEXT`."""

    def __init__(self, stream: TextIO | None = None, *, timestamps: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.timestamps = timestamps
        self.lock = threading.Lock()

    def say(self, actor: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S ") if self.timestamps else ""
        with self.lock:
            self.stream.write(f"{stamp}[{actor}] {text}\n")
            self.stream.flush()

    def raw(self, text: str) -> None:
        with self.lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    # Hooks for a live view; the plain console prints lines only.
    def start_run(self, total: int, stats: RunStats) -> None:
        """A build begins: `total` beads to run, counted in `stats` as they go."""

    def transition(self, bead_id: str, state: str, note: str | None) -> None:
        """A bead moved (every ledger transition passes here)."""

    def end_run(self) -> None:
        """The build is over: stop any live display before the summary."""


@dataclass
class RunStats:
    """Counters the summary reports; updated from many bead threads."""

    dispatched: set[str] = field(default_factory=set)
    merged: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)  # beads the witness sent back at least once
    interrupted: set[str] = field(default_factory=set)
    held: set[str] = field(default_factory=set)  # not dispatched: budget spent or Ctrl-C
    retries: int = 0
    running: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    idle: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.idle = threading.Condition(self.lock)

    def start(self, bead_id: str) -> None:
        with self.lock:
            self.dispatched.add(bead_id)
            self.running += 1
            self.peak = max(self.peak, self.running)

    def finish(self, bead_id: str, merged: bool, reason: str | None) -> None:
        with self.lock:
            self.running -= 1
            if merged:
                self.merged.add(bead_id)
            elif bead_id not in self.interrupted:
                self.failed[bead_id] = reason or "failed"
            self.idle.notify_all()

    def hold(self, bead_id: str) -> None:
        with self.lock:
            self.held.add(bead_id)

    def interrupt(self, bead_id: str) -> None:
        with self.lock:
            self.interrupted.add(bead_id)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no bead is running (after an interrupt); False on timeout."""
        with self.idle:
            return self.idle.wait_for(lambda: self.running == 0, timeout)

    def reject(self, bead_id: str) -> None:
        with self.lock:
            self.rejected.add(bead_id)

    def retry(self) -> None:
        with self.lock:
            self.retries += 1


def _pct(part: int, whole: int) -> str:
    return f" ({100 * part / whole:.1f}%)" if whole else ""


def summary(stats: RunStats, *, selected: int, skipped: int, wall: float) -> list[str]:
    """The end-of-build summary, in the article's words."""
    done = len(stats.dispatched)
    fixed = len(stats.rejected & stats.merged)
    still_open = selected - skipped - len(stats.merged)
    lines = [
        "[Gas Town] Session complete",
        f"Beads dispatched: {done}",
        f"Beads merged: {len(stats.merged)}{_pct(len(stats.merged), done)}",
        f"Beads rejected: {len(stats.rejected)}{_pct(len(stats.rejected), done)}"
        + (f" (all returned for retry, {fixed} subsequently fixed)" if stats.rejected else ""),
        f"Beads retried: {stats.retries} attempts",
        f"Beads failed: {len(stats.failed)}",
        f"Beads blocked: {len(stats.blocked)}",
        *([f"Beads interrupted: {len(stats.interrupted)}"] if stats.interrupted else []),
        f"Beads still open: {still_open}",
        f"Beads already up to date: {skipped}",
        f"Wall clock time: {_duration(wall)}",
    ]
    return lines


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"
