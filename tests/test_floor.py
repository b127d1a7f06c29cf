"""The priority gate in front of doit: a free slot goes to the longest remaining path."""
from __future__ import annotations

import threading

from gastown.floor import Slots


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
