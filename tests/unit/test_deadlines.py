"""Activity timeouts on shared timers (runnerq.deadlines): each fires once, within one slot
after its deadline, never when disarmed in time."""

from __future__ import annotations

import asyncio
from typing import Any

from runnerq.deadlines import Deadlines

RES = 0.02


async def test_expiry_and_disarming() -> None:
    loop = asyncio.get_running_loop()
    fired: dict[str, float] = {}
    all_fired = asyncio.Event()

    def expire(key: str) -> None:
        fired.setdefault(key, loop.time())
        if len(fired) == 3:
            all_fired.set()

    deadlines = Deadlines(expire, resolution=RES)
    start = loop.time()
    slots = {key: deadlines.add(key, 0.05) for key in ("a", "b", "c")}
    deadlines.add("late", 0.15)
    deadlines.discard("b", slots["b"])
    assert len(deadlines) == 3
    await asyncio.wait_for(all_fired.wait(), 5)
    assert sorted(fired) == ["a", "c", "late"]
    for key, seconds in (("a", 0.05), ("c", 0.05), ("late", 0.15)):
        assert fired[key] >= start + seconds  # never early
    assert len(deadlines) == 0


def _count_timers(loop: asyncio.AbstractEventLoop) -> list[float]:
    """Record each timer armed on ``loop`` (its time) from now on."""
    armed: list[float] = []
    call_at = loop.call_at

    def counting(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(when)
        return call_at(when, *args, **kwargs)

    loop.call_at = counting  # type: ignore[method-assign,assignment]
    return armed


async def test_one_timer_for_deadlines_later_than_the_armed_one() -> None:
    """A steady flow of activities (each deadline in a later slot than the one before) arms
    no timer after the first: the armed one, when it fires, arms the next."""
    armed = _count_timers(asyncio.get_running_loop())
    deadlines = Deadlines(lambda key: None, resolution=0.001)
    for i in range(1000):
        deadlines.add(str(i), 300.0 + i * 0.01)
    assert len(armed) == 1
    deadlines.close()
    assert len(deadlines) == 0


async def test_an_earlier_deadline_arms_an_earlier_timer() -> None:
    loop = asyncio.get_running_loop()
    fired: dict[str, float] = {}
    events = {"soon": asyncio.Event(), "late": asyncio.Event()}

    def expire(key: str) -> None:
        fired.setdefault(key, loop.time())
        events[key].set()

    deadlines = Deadlines(expire, resolution=RES)
    start = loop.time()
    deadlines.add("late", 0.3)
    deadlines.add("soon", 0.05)
    await asyncio.wait_for(events["soon"].wait(), 5)
    assert list(fired) == ["soon"]  # not held back until the first timer
    assert start + 0.05 <= fired["soon"]
    await asyncio.wait_for(events["late"].wait(), 5)
    assert list(fired) == ["soon", "late"]
    assert start + 0.3 <= fired["late"]
    deadlines.close()


async def test_a_timer_whose_activities_finished_arms_the_next() -> None:
    loop = asyncio.get_running_loop()
    fired: dict[str, float] = {}
    all_fired = asyncio.Event()

    def expire(key: str) -> None:
        fired[key] = loop.time()
        all_fired.set()

    deadlines = Deadlines(expire, resolution=RES)
    start = loop.time()
    first = deadlines.add("finished", 0.05)
    deadlines.add("hung", 0.15)
    deadlines.discard("finished", first)
    await asyncio.wait_for(all_fired.wait(), 5)
    assert list(fired) == ["hung"]
    assert start + 0.15 <= fired["hung"]
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
    fired: dict[str, float] = {}
    deadlines = Deadlines(lambda key: None, resolution=RES)

    b_fired = asyncio.Event()

    def expire(key: str) -> None:
        fired[key] = loop.time()
        if key == "b":
            b_fired.set()
        if key == "a":
            deadlines.add("later", 0.5)  # e.g. a retry started from the timeout

    deadlines._expire = expire
    start = loop.time()
    deadlines.add("a", 0.05)
    deadlines.add("b", 0.15)
    await asyncio.wait_for(b_fired.wait(), 5)
    assert list(fired) == ["a", "b"]  # "b" fired before "later" (0.5 s after "a")
    assert start + 0.15 <= fired["b"]
    deadlines.close()
