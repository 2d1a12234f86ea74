"""A handler that blocks the worker's event loop past the lease (``time.sleep``, CPU-bound
code): the stall guard keeps the worker's leases, so neither that activity nor the ones that
share its worker are re-run by another worker (tests/chaos kb-blocking-livelock).

Another worker's reaper is played by a thread with a client of its own: it reaps every 20 ms
while this test's event loop (which runs the worker) is blocked.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runnerq import ActivityClient, ActivityContext, InMemoryMetrics
from runnerq.metrics import EVENT_LOOP_STALL
from tests.conftest import EngineFactory
from tests.support.polling import eventually


async def _value(value: Any) -> Any:
    return value


LEASE = 0.6
HEARTBEAT = 0.15
BLOCK = 2.0  # more than three leases


@contextlib.contextmanager
def reaper(redis_url: str, queue: str) -> Iterator[list[int]]:
    """Reap expired leases every 20 ms from another thread; yields the reaped counts."""
    stop = threading.Event()
    reaped: list[int] = []

    async def main() -> None:
        other = ActivityClient(redis_url, queue)
        try:
            while not stop.is_set():
                if n := await other.store.reap():
                    reaped.append(n)
                await asyncio.sleep(0.02)
        finally:
            await other.aclose()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        yield reaped
    finally:
        stop.set()
        thread.join(5)


async def _run(
    client: ActivityClient,
    make_engine: EngineFactory,
    run_engine: Any,
    redis_url: str,
    **engine_kwargs: Any,
) -> tuple[collections.Counter[str], list[int], str, InMemoryMetrics]:
    """Enqueue one activity that blocks the loop for BLOCK seconds on its first run, and five
    short ones beside it (claimed in the same batch), run them with a reaper active; returns
    the executions per activity, what the reaper took and the blocker's id."""
    metrics = InMemoryMetrics()
    engine = make_engine(
        lease_duration=LEASE, heartbeat_interval=HEARTBEAT, metrics=metrics, **engine_kwargs
    )
    runs: collections.Counter[str] = collections.Counter()

    @engine.activity("block")
    async def block(payload: Any, ctx: ActivityContext) -> Any:
        runs[ctx.activity_id] += 1
        if runs[ctx.activity_id] == 1:
            time.sleep(BLOCK)  # blocks the event loop: the point of the test
        return payload

    @engine.activity("ok")
    async def ok(payload: Any, ctx: ActivityContext) -> Any:
        runs[ctx.activity_id] += 1
        await asyncio.sleep(0.01)
        return payload

    blocker = await client.execute_activity("block", "b")
    others = [await client.execute_activity("ok", i) for i in range(5)]
    with reaper(redis_url, client.queue_name) as reaped:
        await run_engine(engine)
        assert await blocker.get_result(timeout=15) == "b"
        assert [await f.get_result(timeout=15) for f in others] == list(range(5))
    return runs, reaped, blocker.activity_id, metrics


async def test_blocking_handler_keeps_its_leases_and_its_neighbours(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, redis_url: str
) -> None:
    runs, reaped, _, metrics = await _run(client, make_engine, run_engine, redis_url)
    assert reaped == []
    assert sorted(runs.values()) == [1] * 6  # nothing ran twice
    stats = await client.get_stats()
    assert (stats.redelivered, stats.completed, stats.running) == (0, 6, 0)
    # The guard sees the stall end at its next check after the loop is free: wait for it.
    await eventually(lambda: _value(metrics.durations[EVENT_LOOP_STALL]), what="stall reported")
    stalls = metrics.durations[EVENT_LOOP_STALL]
    assert len(stalls) == 1 and 1.0 < stalls[0] < BLOCK + 1


@pytest.mark.parametrize("limit", [0, 1.0], ids=["guard-off", "past-the-limit"])
async def test_without_the_guard_or_past_its_limit_the_leases_expire(
    client: ActivityClient,
    make_engine: EngineFactory,
    run_engine: Any,
    redis_url: str,
    limit: float,
) -> None:
    """The control: with the guard off, or a stall longer than loop_stall_limit, the leases
    expire during the block and the reaper hands the activities out again."""
    runs, reaped, blocker, _ = await _run(
        client, make_engine, run_engine, redis_url, loop_stall_limit=limit
    )
    assert sum(reaped) >= 6
    assert runs[blocker] == 2  # re-run after its lease was reaped
    assert (await client.get_stats()).redelivered >= 6


async def test_a_claim_answered_during_a_block_is_not_started_on_an_expired_lease(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, redis_url: str
) -> None:
    """An idle worker waits for work in Redis with its next claim queued behind the wait.
    If the event loop blocks meanwhile, Redis still claims for it: that lease is in no
    renewal (the guard renews what the worker knew it held), expires, and the reaper hands
    the activity out again. Read after the block, the claim must not be run on its stale
    lease (it would run twice); the activity runs once, from its next claim."""
    # A lease of 1.6 s: the worker's wait lasts a quarter lease (0.4 s) before its queued claim
    # runs anyway, so the late enqueue below lands while the first wait is still pending.
    engine = make_engine(
        lease_duration=1.6, heartbeat_interval=0.4, max_workers=2, schedule_poll_interval=60
    )
    runs: collections.Counter[str] = collections.Counter()
    blocking = threading.Event()

    @engine.activity("block")
    async def block(payload: Any, ctx: ActivityContext) -> Any:
        runs[ctx.activity_id] += 1
        await asyncio.sleep(0.05)  # the worker sends its wait, claim queued behind it
        blocking.set()
        time.sleep(2.5)  # blocks the event loop past the late activity's lease
        return payload

    @engine.activity("ok")
    async def ok(payload: Any, ctx: ActivityContext) -> Any:
        runs[ctx.activity_id] += 1
        return payload

    def enqueue_during_the_block(ids: list[str]) -> None:
        async def main() -> None:
            async with ActivityClient(redis_url, client.queue_name) as other:
                await other.connect()  # before the block starts
                assert await asyncio.to_thread(blocking.wait, 10)
                ids.append((await other.execute_activity("ok", "late")).activity_id)

        asyncio.run(main())

    await run_engine(engine)
    late_ids: list[str] = []
    producer = threading.Thread(target=enqueue_during_the_block, args=(late_ids,))
    producer.start()  # connects now, enqueues once the block starts
    with reaper(redis_url, client.queue_name) as reaped:
        blocker = await client.execute_activity("block", "b")
        assert await blocker.get_result(timeout=15) == "b"
        producer.join(10)
        assert await client.future(late_ids[0]).get_result(timeout=15) == "late"
    assert sum(reaped) >= 1  # the late activity's lease expired during the block
    assert runs[late_ids[0]] == 1
    assert runs[blocker.activity_id] == 1  # the guard kept the blocker's lease
