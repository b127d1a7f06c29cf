"""The desk: gastown's own work for beads (worktrees, commits, merges, ledger records) is done
by a few bead threads at a time, one per core; a bead leaves it while others work for it (its
agent, its checks, CI, the refinery's queue) and queues again after.

A wave of twenty beads doing that work at once shares two cores and the GIL: every thread then
hands the GIL over at each system call, and each does its work late (bench/overhead.py measured
the wave's agents starting and landing later, side by side). Two at a time, each gets on with it.

A seat held longer than `limit` no longer counts (a fresh checkout of a big repository, a
merge-tree on one): the next in line sits down then, so a slow step holds up the others by no
more than that, and no wait that forgot to step away can block the rest.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_here = threading.local()  # .seat: (desk, ticket) while this thread is seated


class Desk:
    """Seats given in the order asked for: ticket n sits once n-1 has, and fewer than `width`
    seats are held that were taken less than `limit` seconds ago."""

    def __init__(self, width: int | None = None, limit: float = 0.05) -> None:
        self.width = max(1, width or os.cpu_count() or 1)
        self.limit = limit
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # for observers: the line moved
        self._asked = 0  # tickets handed out
        self._next = 0  # the ticket to be seated next
        self._seated: dict[int, float] = {}  # ticket -> when it sat down
        self._gone: set[int] = set()  # tickets whose thread stopped waiting for a seat
        self._turns: dict[int, threading.Condition] = {}  # ticket -> what its thread waits on

    @contextmanager
    def seat(self) -> Iterator[None]:
        """Seated for the block (at once when this thread already is)."""
        if getattr(_here, "seat", None) is not None:
            yield
            return
        _here.seat = (self, self._sit())
        try:
            yield
        finally:
            seated, _here.seat = _here.seat, None
            if seated is not None:
                seated[0]._leave(seated[1])

    def seated(self) -> int:
        """How many seats are held now."""
        with self._lock:
            return len(self._seated)

    def waiting(self) -> int:
        """How many threads wait for a seat now."""
        with self._lock:
            return self._asked - self._next

    def _sit(self) -> int:
        with self._lock:
            ticket = self._asked
            self._asked += 1
            self._changed.notify_all()  # lets observers see the line grow
            try:
                if (wait := self._wait(ticket)) != 0.0:
                    self._turns[ticket] = turn = threading.Condition(self._lock)
                    while wait != 0.0:
                        self._block(turn, wait)
                        wait = self._wait(ticket)
            except BaseException:  # gone from the line: those behind must not wait for it
                self._gone.add(ticket)
                self._advance()
                raise
            finally:
                self._turns.pop(ticket, None)
            self._seated[ticket] = time.monotonic()
            self._advance()
            return ticket

    @staticmethod
    def _block(turn: threading.Condition, timeout: float | None) -> None:
        turn.wait(timeout)

    def _advance(self) -> None:
        """The line moves past the tickets seated or gone; the caller holds the lock."""
        while self._next in self._seated or self._next in self._gone:
            self._gone.discard(self._next)
            self._next += 1
        self._wake_next()

    def _leave(self, ticket: int) -> None:
        with self._lock:
            del self._seated[ticket]
            self._wake_next()

    def _wake_next(self) -> None:
        """The next in line alone is woken to see whether it may sit down: only it can, and
        waking every waiting thread at each change (twenty in a wave of beads) costs the
        build milliseconds of CPU on each. The caller holds the lock."""
        if (turn := self._turns.get(self._next)) is not None:
            turn.notify()
        self._changed.notify_all()

    def _wait(self, ticket: int) -> float | None:
        """0.0 when `ticket` may sit down, else how long to wait (None: until notified)."""
        if ticket != self._next:
            return None
        now = time.monotonic()
        recent = sorted(at for at in self._seated.values() if now - at < self.limit)
        if len(recent) < self.width:
            return 0.0
        # once this many of them are older than the limit, one seat counts as free
        return max(0.001, recent[len(recent) - self.width] + self.limit - now)


@contextmanager
def away() -> Iterator[None]:
    """Out of the desk while this thread waits for work others do; back in line after. Does
    nothing on a thread that is not seated."""
    seated = getattr(_here, "seat", None)
    if seated is None:
        yield
        return
    desk, ticket = seated
    _here.seat = None
    desk._leave(ticket)
    try:
        yield
    finally:
        _here.seat = (desk, desk._sit())
