"""The desk: gastown's own work for beads, a few bead threads at a time."""
from __future__ import annotations

import contextlib
import queue
import threading

from gastown import desk
from gastown.desk import Desk


class _Sitters:
    """Threads sitting at one desk; each stays seated until told to go, and can be told to
    step away (and come back) meanwhile. Orders reach a thread through its queue."""

    def __init__(self, at: Desk) -> None:
        self.desk = at
        self.log: list[str] = []
        self.seated: dict[str, threading.Event] = {}
        self.away: dict[str, threading.Event] = {}
        self.orders: dict[str, queue.Queue[str]] = {}
        self.threads: dict[str, threading.Thread] = {}

    def ask(self, name: str) -> None:
        """`name` asks for a seat; returns once the desk has it in line."""
        self.seated[name], self.away[name] = threading.Event(), threading.Event()
        self.orders[name] = queue.Queue()
        asked = self.desk._asked
        self.threads[name] = threading.Thread(target=self._run, args=(name,))
        self.threads[name].start()
        with self.desk._changed:
            assert self.desk._changed.wait_for(lambda: self.desk._asked > asked, timeout=10)

    def _run(self, name: str) -> None:
        with self.desk.seat():
            self.log.append(f"{name} in")
            self.seated[name].set()
            while self.orders[name].get(timeout=10) == "away":
                with desk.away():
                    self.log.append(f"{name} away")
                    self.away[name].set()
                    assert self.orders[name].get(timeout=10) == "back"
                self.log.append(f"{name} back")
                self.seated[name].set()
            self.log.append(f"{name} out")

    def is_in(self, name: str) -> bool:
        return self.seated[name].wait(timeout=10)

    def send_away(self, name: str) -> None:
        self.seated[name].clear()
        self.orders[name].put("away")
        assert self.away[name].wait(timeout=10)

    def call_back(self, name: str) -> None:
        self.orders[name].put("back")

    def let_go(self, *names: str) -> None:
        for name in names:
            self.orders[name].put("go")
            self.threads[name].join(timeout=10)


def test_seats_are_given_one_after_another_in_order() -> None:
    sitters = _Sitters(Desk(width=1, limit=60))
    for name in "abc":
        sitters.ask(name)
    assert sitters.is_in("a")
    sitters.let_go("a", "b", "c")  # each may leave once seated; the next sits only then
    assert sitters.log == ["a in", "a out", "b in", "b out", "c in", "c out"]


def test_as_many_seated_at_once_as_the_width() -> None:
    sitters = _Sitters(Desk(width=2, limit=60))
    sitters.ask("a")
    assert sitters.is_in("a")
    sitters.ask("b")
    assert sitters.is_in("b"), "b waited although a alone was seated"
    sitters.ask("c")
    assert sitters.desk.waiting() == 1
    sitters.let_go("b")
    assert sitters.is_in("c")
    assert sitters.log == ["a in", "b in", "b out", "c in"]
    sitters.let_go("a", "c")
    assert sitters.desk.seated() == 0


def test_a_long_seat_lets_the_next_sit_down_after_the_limit() -> None:
    """A seat held longer than the limit (a fresh checkout of a big repository) holds up the
    next in line no longer than that."""
    sitters = _Sitters(Desk(width=1, limit=0.05))
    sitters.ask("a")
    assert sitters.is_in("a")
    sitters.ask("b")
    assert sitters.is_in("b"), "b waited for a to leave"
    assert sitters.log == ["a in", "b in"]
    sitters.let_go("a", "b")


def test_away_frees_the_seat_and_queues_again_behind_those_waiting() -> None:
    """A bead whose agent works leaves its seat to the next bead; when the agent is done it
    waits its turn like any other."""
    sitters = _Sitters(Desk(width=1, limit=60))
    sitters.ask("a")
    assert sitters.is_in("a")
    sitters.ask("b")
    sitters.send_away("a")
    assert sitters.is_in("b"), "b still waits for a's seat while a is away"
    sitters.call_back("a")
    with sitters.desk._changed:  # a is in line again, behind b's seat
        assert sitters.desk._changed.wait_for(lambda: sitters.desk._asked - sitters.desk._next
                                              == 1, timeout=10)
    assert "a back" not in sitters.log
    sitters.let_go("b")
    assert sitters.is_in("a")
    sitters.let_go("a")
    assert sitters.log == ["a in", "a away", "b in", "b out", "a back", "a out"]


def test_away_and_a_second_seat_do_nothing_where_they_need_not() -> None:
    at = Desk(width=1, limit=60)
    with desk.away():  # not seated: nothing to leave
        assert at.seated() == 0
    with at.seat(), at.seat():  # already seated: the same seat
        assert at.seated() == 1
    assert at.seated() == 0


def test_a_thread_that_stops_waiting_does_not_hold_up_the_line() -> None:
    at = Desk(width=1, limit=60)
    at._sit()  # the seat is taken (ticket 0)

    class Stop(Exception):
        pass

    def wait_then_stop() -> None:
        def block(turn: threading.Condition, timeout: float | None) -> None:
            del at._block  # type: ignore[method-assign]
            raise Stop

        at._block = block  # type: ignore[method-assign]
        with contextlib.suppress(Stop):
            at._sit()  # ticket 1: raises while waiting

    wait_then_stop()
    seated = threading.Event()

    def sit() -> None:
        with at.seat():
            seated.set()

    thread = threading.Thread(target=sit)
    thread.start()
    at._leave(0)
    assert seated.wait(timeout=10), "ticket 2 waits for ticket 1, which stopped waiting"
    thread.join(timeout=10)
