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
