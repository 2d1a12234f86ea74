"""A handler that blocks the worker's event loop past the lease (``time.sleep``, CPU-bound
code): the stall guard keeps the worker's leases, so neither that activity nor the ones that
share its worker are re-run by another worker (tests/chaos kb-blocking-livelock).

Another worker's reaper is played by a thread with a client of its own: it reaps every 20 ms
while this test's event loop (which runs the worker) is blocked. Each block lasts until what
it is about has happened (leases outlived, or reaped), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityContext, InMemoryMetrics
from runnerq.keys import QueueKeys
from runnerq.metrics import EVENT_LOOP_STALL
from tests.conftest import EngineFactory
from tests.support.polling import eventually


async def _value(value: Any) -> Any:
    return value


# Leases long enough that the stall guard's thread, or a renewal, held up by a loaded machine
# (two cores shared with other tests) does not miss one: the guard has to renew within
# lease - heartbeat (1.5 s). Each block lasts until the event it is about (see _block_until),
# not for a fixed time, so a longer lease costs only what the block needs.
LEASE = 2.0
HEARTBEAT = 0.5
# Only a block whose event never comes (a test about to fail) reaches this.
BLOCK_CAP = 30.0


class Reaper:
    """Another worker's reaper: reaps expired leases every 20 ms from a thread with a client
    of its own, while this test's event loop (which runs the worker) may be blocked."""

    def __init__(self, redis_url: str, queue: str) -> None:
        self.redis_url = redis_url
        self.queue = queue
        self.reaped: list[int] = []  # the count of each reap that found something

    @contextlib.contextmanager
    def running(self) -> Iterator[Reaper]:
        stop = threading.Event()

        async def main() -> None:
            other = ActivityClient(self.redis_url, self.queue)
            try:
                while not stop.is_set():
                    if n := await other.store.reap():
                        self.reaped.append(n)
                    await asyncio.sleep(0.02)
            finally:
                await other.aclose()

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(5)


def _block_until(done: Callable[[], bool]) -> float:
    """Block the calling thread (in a handler: the worker's event loop, the point of these
    tests) until ``done()``; returns how long it blocked."""
    started = time.monotonic()
    while not done() and time.monotonic() - started < BLOCK_CAP:
        time.sleep(0.01)
    return time.monotonic() - started


class LeaseClock:
    """Whether every lease held when ``start()`` was called has outlived its deadline by a
    whole lease (by the Redis server's clock, which sets the deadlines): without renewals
    they would all have expired, and been reaped, by then. Synchronous, for a blocked loop."""

    def __init__(self, redis_url: str, queue: str) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.inflight = QueueKeys(queue).inflight
        self.deadline_ms = 0.0

    def start(self) -> None:
        held = cast(
            list[tuple[bytes, float]], self.redis.zrange(self.inflight, 0, -1, withscores=True)
        )
        assert held, "no lease held when the block started"
        self.deadline_ms = max(deadline for _, deadline in held)

    def outlived(self) -> bool:
        seconds, micros = self.redis.time()
        return seconds * 1000 + micros / 1000 > self.deadline_ms + LEASE * 1000

    def close(self) -> None:
        self.redis.close()


async def _run(
    client: ActivityClient,
    make_engine: EngineFactory,
    run_engine: Any,
    redis_url: str,
    *,
    block_until: Callable[[Reaper], bool],
    **engine_kwargs: Any,
) -> tuple[collections.Counter[str], Reaper, str, InMemoryMetrics, float, float]:
    """Enqueue one activity that blocks the loop on its first run, until ``block_until(reaper)``,
    and five short ones beside it (claimed in the same batch), run them with a reaper active;
    returns the executions per activity, the reaper, the blocker's id, the metrics, how long
    the loop was blocked and when the run started (``time.monotonic()``)."""
    metrics = InMemoryMetrics()
    engine = make_engine(
        lease_duration=LEASE, heartbeat_interval=HEARTBEAT, metrics=metrics, **engine_kwargs
    )
    runs: collections.Counter[str] = collections.Counter()
    reaper = Reaper(redis_url, client.queue_name)
    blocked: list[float] = []

    @engine.activity("block")
    async def block(payload: Any, ctx: ActivityContext) -> Any:
        runs[ctx.activity_id] += 1
        if runs[ctx.activity_id] == 1:
            blocked.append(_block_until(lambda: block_until(reaper)))  # blocks the loop
        return payload

    @engine.activity("ok")
    async def ok(payload: Any, ctx: ActivityContext) -> Any:
        runs[ctx.activity_id] += 1
        await asyncio.sleep(0.01)
        return payload

    blocker = await client.execute_activity("block", "b")
    others = [await client.execute_activity("ok", i) for i in range(5)]
    started = time.monotonic()
    with reaper.running():
        await run_engine(engine)
        assert await blocker.get_result(timeout=BLOCK_CAP + 15) == "b"
        assert [await f.get_result(timeout=15) for f in others] == list(range(5))
    return runs, reaper, blocker.activity_id, metrics, blocked[0], started


async def test_blocking_handler_keeps_its_leases_and_its_neighbours(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, redis_url: str
) -> None:
    clock = LeaseClock(redis_url, client.queue_name)

    def outlived(reaper: Reaper) -> bool:
        if not clock.deadline_ms:
            clock.start()  # the first check: the block has just begun
        return clock.outlived() or bool(reaper.reaped)  # (reaped: failing, stop at once)

    try:
        runs, reaper, _, metrics, blocked, started = await _run(
            client, make_engine, run_engine, redis_url, block_until=outlived
        )
    finally:
        clock.close()
    assert blocked < BLOCK_CAP
    assert reaper.reaped == []
    assert sorted(runs.values()) == [1] * 6  # nothing ran twice
    stats = await client.get_stats()
    assert (stats.redelivered, stats.completed, stats.running) == (0, 6, 0)
    # The guard sees the stall end at its next check after the loop is free: wait for it.
    await eventually(lambda: _value(metrics.durations[EVENT_LOOP_STALL]), what="stall reported")
    stalls = metrics.durations[EVENT_LOOP_STALL]
    # It covers the block, and lies within the run (bounds measured, not guessed).
    assert len(stalls) == 1 and blocked <= stalls[0] <= time.monotonic() - started


@pytest.mark.parametrize("limit", [0, 1.0], ids=["guard-off", "past-the-limit"])
async def test_without_the_guard_or_past_its_limit_the_leases_expire(
    client: ActivityClient,
    make_engine: EngineFactory,
    run_engine: Any,
    redis_url: str,
    limit: float,
) -> None:
    """The control: with the guard off, or a stall longer than loop_stall_limit, the leases
    expire during the block and the reaper hands the activities out again (the block lasts
    until it has handed out all six)."""
    runs, reaper, blocker, _, blocked, _ = await _run(
        client,
        make_engine,
        run_engine,
        redis_url,
        block_until=lambda reaper: sum(reaper.reaped) >= 6,
        loop_stall_limit=limit,
    )
    assert blocked < BLOCK_CAP
    assert sum(reaper.reaped) >= 6
    assert runs[blocker] == 2  # re-run after its lease was reaped
    assert (await client.get_stats()).redelivered >= 6


async def test_a_claim_answered_during_a_block_is_not_started_on_an_expired_lease(
    client: ActivityClient,
    make_engine: EngineFactory,
    run_engine: Any,
    redis_url: str,
    raw_redis: aioredis.Redis,
) -> None:
    """An idle worker waits for work in Redis with its next claim queued behind the wait.
    If the event loop blocks meanwhile, Redis still claims for it: that lease is in no
    renewal (the guard renews what the worker knew it held), expires, and the reaper hands
    the activity out again. Read after the block, the claim must not be run on its stale
    lease (it would run twice); the activity runs once, from its next claim."""
    # The worker's wait for work lasts a quarter lease (1 s here) before its queued claim
    # runs anyway: the late enqueue below must land while that wait is pending in Redis. A
    # quarter of 1.6 s (0.4 s) was too short a window for a thread on a loaded machine; the
    # block ends when the late activity's lease was reaped, so the longer lease costs little.
    engine = make_engine(
        lease_duration=4.0, heartbeat_interval=1.0, max_workers=2, schedule_poll_interval=60
    )
    runs: collections.Counter[str] = collections.Counter()
    reaper = Reaper(redis_url, client.queue_name)
    blocking = threading.Event()
    blocked: list[float] = []

    @engine.activity("block")
    async def block(payload: Any, ctx: ActivityContext) -> Any:
        runs[ctx.activity_id] += 1
        await _waiting_in_redis(raw_redis)  # the worker sent its wait, claim queued behind it
        blocking.set()
        # Blocks the event loop until the late activity's lease, answered during the block,
        # expired and was reaped.
        blocked.append(_block_until(lambda: bool(reaper.reaped)))
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
    with reaper.running():
        blocker = await client.execute_activity("block", "b")
        assert await blocker.get_result(timeout=BLOCK_CAP + 15) == "b"
        producer.join(10)
        assert await client.future(late_ids[0]).get_result(timeout=15) == "late"
    assert blocked[0] < BLOCK_CAP
    assert sum(reaper.reaped) >= 1  # the late activity's lease expired during the block
    assert runs[late_ids[0]] == 1
    assert runs[blocker.activity_id] == 1  # the guard kept the blocker's lease


async def _waiting_in_redis(raw_redis: aioredis.Redis) -> None:
    """Until a client of this test's Redis is blocked in a BLPOP: the worker's wait for work
    (the test's other clients never block)."""

    async def blocked() -> bool:
        clients = await raw_redis.client_list()
        return any(c.get("cmd") == "blpop" and "b" in c.get("flags", "") for c in clients)

    await eventually(blocked, what="the worker's wait pending in Redis")
