"""``Deadlines``: the timeouts of many running activities on a few timers.

``asyncio.timeout`` costs a timer handle, a heap push and a cancellation per activity, as
much as the rest of running a no-op activity. Activities here share one timer per
``resolution`` slot instead: an activity's timeout fires at the end of the slot its deadline
falls in, at most ``resolution`` late. A slot whose activities all finished frees its set at
once, so the memory kept is bounded by the activities running (plus one small timer handle
per slot until it fires).
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
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def add(self, key: str, seconds: float) -> int:
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + seconds) / self._resolution)
        keys = self._slots.get(slot)
        if keys is None:
            keys = self._slots[slot] = set()
            if slot not in self._timers:
                self._timers[slot] = loop.call_at(slot * self._resolution, self._fire, slot)
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
            # stays (a few dozen bytes; re-arming one per refill would cost what a timer
            # per activity costs) and finds nothing when it fires.
            del self._slots[slot]

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._slots.clear()

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._slots.values())

    def _fire(self, slot: int) -> None:
        self._timers.pop(slot, None)
        for key in self._slots.pop(slot, ()):
            self._expire(key)
