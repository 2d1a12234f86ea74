"""``Deadlines``: the timeouts of many running activities on one timer.

``asyncio.timeout`` costs a timer handle, a heap push and a cancellation per activity, as
much as the rest of running a no-op activity. Activities here fall into ``resolution`` slots
instead: an activity's timeout fires at the end of the slot its deadline falls in, at most
``resolution`` late, and one timer is armed at a time, for the earliest slot. When it fires
it expires what is still in that slot and arms itself for the next one, so a steady flow of
activities (each deadline later than the one before) arms no timer at all. A slot whose
activities all finished frees its set at once, so the memory kept is bounded by the
activities running.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["Deadlines"]


class Deadlines:
    """``add(key, seconds)`` arms a timeout and returns its slot; ``discard(key, slot)``
    disarms it; ``expire(key)`` is called for each key still armed when its slot ends."""

    def __init__(self, expire: Callable[[str], None], resolution: float = 0.05) -> None:
        self._expire = expire
        self._resolution = resolution
        self._slots: dict[int, set[str]] = {}
        # The one timer, and the slot it ends: no later than any slot in ``_slots``.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0

    def add(self, key: str, seconds: float) -> int:
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + seconds) / self._resolution)
        keys = self._slots.get(slot)
        if keys is None:
            keys = self._slots[slot] = set()
            if self._timer is None or slot < self._timer_slot:
                self._arm(loop, slot)
        keys.add(key)
        return slot

    def discard(self, key: str, slot: int) -> None:
        keys = self._slots.get(slot)
        if keys is None:
            return
        keys.discard(key)
        if not keys:
            # Its activities all finished in time: free the set now, not at its deadline
            # (with a 300 s timeout under load, thousands of them would wait). The timer
            # stays armed (re-arming it per finished activity would cost what a timer per
            # activity costs) and finds nothing when it fires.
            del self._slots[slot]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._slots.clear()

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._slots.values())

    def _arm(self, loop: asyncio.AbstractEventLoop, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = loop.call_at(slot * self._resolution, self._fire)

    def _fire(self) -> None:
        self._timer = None
        ended = self._timer_slot
        for slot in sorted(s for s in self._slots if s <= ended):
            for key in self._slots.pop(slot):
                self._expire(key)
        if self._slots:  # (an ``expire`` may have added a slot, and armed the timer for it)
            first = min(self._slots)
            if self._timer is None or first < self._timer_slot:
                self._arm(asyncio.get_running_loop(), first)
