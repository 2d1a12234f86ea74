"""Activity timeouts on shared timers (runnerq.deadlines): each fires once, within one slot
after its deadline, never when disarmed in time."""

from __future__ import annotations

import asyncio

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


async def test_activities_share_a_timer_per_slot() -> None:
    deadlines = Deadlines(lambda key: None, resolution=10.0)
    for i in range(1000):
        deadlines.add(str(i), 300.0)
    assert len(deadlines._timers) <= 2  # the deadlines span at most two slots
    deadlines.close()
    assert len(deadlines) == 0 and not deadlines._timers


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
    assert deadlines._slots == {}  # the timers stay: small, and fire finding nothing
    kept = deadlines.add("running", 300.0)
    assert len(deadlines) == 1
    deadlines.discard("running", kept)
    assert deadlines._slots == {}
    deadlines.close()
