"""The priority gate in front of doit: a free slot goes to the longest remaining path."""
from __future__ import annotations

import threading

from gastown.floor import Slots, Stagger


def test_free_slot_goes_to_the_highest_priority_waiter() -> None:
    slots = Slots(1, priority={"short": 1.0, "long": 5.0, "mid": 3.0})
    first = slots.take("first")
    got: list[str] = []

    def wait(bead: str) -> None:
        slot = slots.take(bead)
        got.append(bead)
        slots.give(slot)

    threads = [threading.Thread(target=wait, args=(b,)) for b in ("short", "long", "mid")]
    for thread in threads:
        thread.start()
    with slots.cond:
        assert slots.cond.wait_for(lambda: len(slots.waiting) == 3, timeout=10)
    slots.give(first)
    for thread in threads:
        thread.join(timeout=10)
    assert got == ["long", "mid", "short"]


def test_slots_are_numbered_and_capped() -> None:
    slots = Slots(3)
    taken = [slots.take(b) for b in ("a", "b", "c")]
    assert sorted(taken) == [1, 2, 3]
    slots.give(2)
    assert slots.take("d") == 2


def waiting_for(slots: Slots, count: int) -> None:
    with slots.cond:
        assert slots.cond.wait_for(lambda: len(slots.waiting) == count, timeout=10)


def test_an_approved_beads_slot_is_held_for_the_dependent_its_merge_frees() -> None:
    """`chain2` needs only `chain1`; while chain1 merges, `side` (lower priority) is waiting:
    the slot chain1 gives back waits for chain2 instead of going to side."""
    slots = Slots(1)
    slots.plan({"chain1": 3.0, "chain2": 2.0, "side": 1.0},
               {"chain1": [], "chain2": ["chain1"], "side": []})
    slot = slots.take("chain1")
    got: list[str] = []
    side = threading.Thread(target=lambda: got.append(f"side {slots.take('side')}"))
    side.start()
    waiting_for(slots, 1)
    slots.pass_on(slot, "chain1")
    slots.settle("chain1", merged=True)
    assert slots.take("chain2") == slot  # straight away, ahead of side
    assert got == []
    slots.give(slot)
    side.join(timeout=10)
    assert got == [f"side {slot}"]


def test_a_held_slot_is_freed_when_the_merge_fails() -> None:
    slots = Slots(1)
    slots.plan({"a": 3.0, "b": 2.0, "side": 1.0}, {"a": [], "b": ["a"], "side": []})
    slot = slots.take("a")
    got: list[int] = []
    side = threading.Thread(target=lambda: got.append(slots.take("side")))
    side.start()
    waiting_for(slots, 1)
    slots.pass_on(slot, "a")
    assert got == []
    slots.settle("a", merged=False)  # b will never run: side gets the slot
    side.join(timeout=10)
    assert got == [slot]


def test_no_hold_for_a_dependent_that_waits_on_more_or_ranks_lower() -> None:
    slots = Slots(1)
    slots.plan({"a": 5.0, "b": 1.0, "c": 4.0, "d": 2.0, "side": 3.0},
               {"a": [], "b": ["a"], "c": ["a", "d"], "d": [], "side": []})
    slot = slots.take("a")
    got: list[int] = []
    side = threading.Thread(target=lambda: got.append(slots.take("side")))
    side.start()
    waiting_for(slots, 1)
    slots.pass_on(slot, "a")  # c still needs d, b ranks below side
    side.join(timeout=10)
    assert got == [slot]


def test_a_forfeited_hold_frees_the_slot() -> None:
    slots = Slots(1)
    slots.plan({"a": 2.0, "b": 1.0}, {"a": [], "b": ["a"]})
    slots.pass_on(slots.take("a"), "a")
    slots.settle("a", merged=True)
    assert slots.free == []
    slots.forfeit("b")  # draining: b returns before taking a slot
    assert slots.take("other") == 1


# -- the start stagger ------------------------------------------------------------------------

class _Turns:
    """Threads taking turns on one stagger; each stays inside its turn until let out."""

    def __init__(self, stagger: Stagger) -> None:
        self.stagger = stagger
        self.log: list[str] = []
        self.inside: dict[str, threading.Event] = {}
        self.leave: dict[str, threading.Event] = {}
        self.threads: dict[str, threading.Thread] = {}

    def ask(self, name: str) -> None:
        """`name` asks for a turn; returns once the stagger has counted the request."""
        self.inside[name], self.leave[name] = threading.Event(), threading.Event()
        asked = self.stagger._asked
        self.threads[name] = threading.Thread(target=self._run, args=(name,))
        self.threads[name].start()
        with self.stagger._cond:
            assert self.stagger._cond.wait_for(lambda: self.stagger._asked > asked, timeout=10)

    def _run(self, name: str) -> None:
        with self.stagger.turn():
            self.log.append(f"{name} in")
            self.inside[name].set()
            self.leave[name].wait(timeout=10)
            self.log.append(f"{name} out")

    def is_in(self, name: str) -> bool:
        return self.inside[name].wait(timeout=10)

    def let_out(self, *names: str) -> None:
        for name in names:
            self.leave[name].set()
            self.threads[name].join(timeout=10)


def test_turns_begin_one_after_another_in_order() -> None:
    turns = _Turns(Stagger(width=1, limit=60))
    for name in "abc":
        turns.ask(name)
    assert turns.is_in("a")
    turns.let_out("a", "b", "c")  # each may leave once in; the next begins only then
    assert turns.log == ["a in", "a out", "b in", "b out", "c in", "c out"]


def test_a_long_turn_lets_the_next_begin_after_the_limit() -> None:
    """A turn that outlasts the limit (a fresh checkout of a big repository) holds up the
    next one no longer than that."""
    turns = _Turns(Stagger(width=1, limit=0.05))
    turns.ask("a")
    assert turns.is_in("a")
    turns.ask("b")
    assert turns.is_in("b"), "b waited for a to end"
    assert turns.log == ["a in", "b in"]
    turns.let_out("a", "b")


def test_as_many_turns_at_once_as_the_width() -> None:
    turns = _Turns(Stagger(width=2, limit=60))
    turns.ask("a")
    assert turns.is_in("a")
    turns.ask("b")
    assert turns.is_in("b"), "b waited although a alone was under way"
    turns.ask("c")
    turns.let_out("b")
    assert turns.is_in("c")
    assert turns.log == ["a in", "b in", "b out", "c in"]
    turns.let_out("a", "c")
