"""Activity timeouts on shared timers (runnerq.deadlines): each fires once, within one slot
after its deadline, never when disarmed in time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from runnerq.deadlines import Deadlines

RES = 0.02


class _Timers:
    """Watches the timers armed on a loop from now on: the time each was armed for, and the
    time of the one whose callback is running. How late a timer fires depends on the machine's
    load; the time it was armed for is what ``Deadlines`` decides, so "within one slot" is
    checked on that, exactly."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.armed: list[float] = []
        self.running: float | None = None
        call_at = loop.call_at

        def watching(
            when: float, callback: Callable[..., object], *args: Any, **kwargs: Any
        ) -> asyncio.TimerHandle:
            self.armed.append(when)

            def run(*a: Any) -> None:
                self.running = when
                try:
                    callback(*a)
                finally:
                    self.running = None

            return call_at(when, run, *args, **kwargs)

        loop.call_at = watching  # type: ignore[method-assign,assignment]


def _assert_within_one_slot(due: float | None, added: tuple[float, float], seconds: float) -> None:
    """``due``: the time of the timer that expired a deadline of ``seconds``, added at a
    loop time between ``added[0]`` and ``added[1]``: never before it, at most a slot after."""
    assert due is not None
    assert added[0] + seconds <= due <= added[1] + seconds + RES + 1e-9


async def test_expiry_and_disarming() -> None:
    loop = asyncio.get_running_loop()
    timers = _Timers(loop)
    fired: dict[str, float] = {}
    due: dict[str, float | None] = {}
    all_fired = asyncio.Event()

    def expire(key: str) -> None:
        fired.setdefault(key, loop.time())
        due.setdefault(key, timers.running)
        if len(fired) == 3:
            all_fired.set()

    deadlines = Deadlines(expire, resolution=RES)
    start = loop.time()
    slots = {key: deadlines.add(key, 0.05) for key in ("a", "b", "c")}
    deadlines.add("late", 0.15)
    added = (start, loop.time())
    deadlines.discard("b", slots["b"])
    assert len(deadlines) == 3
    await asyncio.wait_for(all_fired.wait(), 5)
    assert sorted(fired) == ["a", "c", "late"]
    for key, seconds in (("a", 0.05), ("c", 0.05), ("late", 0.15)):
        assert fired[key] >= start + seconds  # never early, by the loop's clock
        _assert_within_one_slot(due[key], added, seconds)
    assert len(deadlines) == 0


async def test_one_timer_for_deadlines_later_than_the_armed_one() -> None:
    """A steady flow of activities (each deadline in a later slot than the one before) arms
    no timer after the first: the armed one, when it fires, arms the next."""
    timers = _Timers(asyncio.get_running_loop())
    deadlines = Deadlines(lambda key: None, resolution=0.001)
    for i in range(1000):
        deadlines.add(str(i), 300.0 + i * 0.01)
    assert len(timers.armed) == 1
    deadlines.close()
    assert len(deadlines) == 0


async def test_an_earlier_deadline_arms_an_earlier_timer() -> None:
    loop = asyncio.get_running_loop()
    timers = _Timers(loop)
    fired: dict[str, float] = {}
    due: dict[str, float | None] = {}
    events = {"soon": asyncio.Event(), "late": asyncio.Event()}

    def expire(key: str) -> None:
        fired.setdefault(key, loop.time())
        due.setdefault(key, timers.running)
        events[key].set()

    deadlines = Deadlines(expire, resolution=RES)
    start = loop.time()
    deadlines.add("late", 0.3)
    deadlines.add("soon", 0.05)
    added = (start, loop.time())
    await asyncio.wait_for(events["soon"].wait(), 5)
    assert list(fired) == ["soon"]  # not held back until the first timer
    assert start + 0.05 <= fired["soon"]
    _assert_within_one_slot(due["soon"], added, 0.05)
    await asyncio.wait_for(events["late"].wait(), 5)
    assert list(fired) == ["soon", "late"]
    assert start + 0.3 <= fired["late"]
    _assert_within_one_slot(due["late"], added, 0.3)
    deadlines.close()


async def test_a_timer_whose_activities_finished_arms_the_next() -> None:
    loop = asyncio.get_running_loop()
    timers = _Timers(loop)
    fired: dict[str, float] = {}
    due: dict[str, float | None] = {}
    all_fired = asyncio.Event()

    def expire(key: str) -> None:
        fired[key] = loop.time()
        due[key] = timers.running
        all_fired.set()

    deadlines = Deadlines(expire, resolution=RES)
    start = loop.time()
    first = deadlines.add("finished", 0.05)
    deadlines.add("hung", 0.15)
    added = (start, loop.time())
    deadlines.discard("finished", first)
    await asyncio.wait_for(all_fired.wait(), 5)
    assert list(fired) == ["hung"]
    assert start + 0.15 <= fired["hung"]
    _assert_within_one_slot(due["hung"], added, 0.15)
    assert len(deadlines) == 0


async def test_close_cancels_the_timers() -> None:
    fired: list[str] = []
    deadlines = Deadlines(fired.append, resolution=RES)
    deadlines.add("x", 0.01)
    deadlines.close()
    await asyncio.sleep(0.05)
    assert fired == []


async def test_finished_activities_leave_nothing_behind() -> None:
    """Under load with long timeouts, slots whose activities all finished must not wait for
    their deadline (memory would grow with the throughput times the timeout)."""
    deadlines = Deadlines(lambda key: None, resolution=0.001)
    for i in range(2000):
        slot = deadlines.add(str(i), 300.0 + i * 0.01)
        deadlines.discard(str(i), slot)
    assert deadlines._slots == {}  # the timer stays: it fires finding nothing
    kept = deadlines.add("running", 300.0)
    assert len(deadlines) == 1
    deadlines.discard("running", kept)
    assert deadlines._slots == {}
    deadlines.close()


async def test_a_deadline_added_while_expiring_does_not_hold_back_earlier_ones() -> None:
    loop = asyncio.get_running_loop()
    timers = _Timers(loop)
    fired: dict[str, float] = {}
    due: dict[str, float | None] = {}
    deadlines = Deadlines(lambda key: None, resolution=RES)

    b_fired = asyncio.Event()

    def expire(key: str) -> None:
        fired[key] = loop.time()
        due[key] = timers.running
        if key == "b":
            b_fired.set()
        if key == "a":
            deadlines.add("later", 0.5)  # e.g. a retry started from the timeout

    deadlines._expire = expire
    start = loop.time()
    deadlines.add("a", 0.05)
    deadlines.add("b", 0.15)
    added = (start, loop.time())
    await asyncio.wait_for(b_fired.wait(), 5)
    assert list(fired) == ["a", "b"]  # "b" fired before "later" (0.5 s after "a")
    assert start + 0.15 <= fired["b"]
    _assert_within_one_slot(due["b"], added, 0.15)
    deadlines.close()
