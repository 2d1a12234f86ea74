"""The queue configuration hash (paused, defaults), bounded memory, stats and metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import (
    ActivityClient,
    ActivityContext,
    ActivityDeadLetteredError,
    ActivityError,
    ActivityNotFoundError,
    ActivityOption,
    ActivityTimedOutError,
    BackoffPolicy,
    InMemoryMetrics,
    QueueSettings,
)
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory
from tests.support.polling import eventually


async def test_paused_queue_is_not_claimed_until_resumed(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, raw_redis: aioredis.Redis
) -> None:
    engine = make_engine(schedule_poll_interval=60)

    @engine.activity("echo")
    async def echo(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    await client.set_queue_config(paused=True)
    await run_engine(engine)
    assert engine.worker is not None
    await eventually(lambda: _value(engine.worker.paused), what="worker saw the pause")  # type: ignore[union-attr]
    future = await client.execute_activity("echo", "held back")
    keys = QueueKeys(client.queue_name)
    # The enqueue woke the worker (it consumed the wake-up token) and it claimed nothing.
    await eventually(lambda: _equals(raw_redis.llen(keys.notify), 0), what="wake-up consumed")
    await asyncio.sleep(0.1)
    stats = await client.get_stats()
    assert (stats.pending, stats.running, stats.paused) == (1, 0, True)

    await client.set_queue_config(paused=False)  # wakes the worker at once (poll is 60 s)
    assert await future.get_result(timeout=10) == "held back"


async def test_queue_defaults_for_retries_and_timeout(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    await client.set_queue_config(max_retries=1, timeout=0.1)
    calls = 0
    engine = make_engine(backoff=BackoffPolicy(base=0.01, cap=0.01, jitter=0))

    @engine.activity("fails")
    async def fails(payload: Any, ctx: ActivityContext) -> Any:
        nonlocal calls
        calls += 1
        raise ActivityError.retry("again")

    @engine.activity("slow")
    async def slow(payload: Any, ctx: ActivityContext) -> Any:
        await asyncio.sleep(10)

    await run_engine(engine)
    with pytest.raises(ActivityDeadLetteredError):
        await (await client.execute_activity("fails", None)).get_result(timeout=10)
    assert calls == 2  # one retry, from the queue default
    with pytest.raises(ActivityTimedOutError):
        await (
            await client.execute_activity("slow", None, ActivityOption(max_retries=0))
        ).get_result(timeout=10)
    # Options on the activity win over the queue's defaults.
    calls = 0
    with pytest.raises(ActivityDeadLetteredError):
        await (
            await client.execute_activity("fails", None, ActivityOption(max_retries=3))
        ).get_result(timeout=10)
    assert calls == 4


async def test_results_expire_and_completed_records_are_capped(
    redis_url: str,
    queue_name: str,
    make_engine: EngineFactory,
    run_engine: Any,
    raw_redis: aioredis.Redis,
) -> None:
    settings = QueueSettings(queue_name, result_ttl=60, completed_cap=5, dead_letter_cap=3)
    client = ActivityClient(redis_url, queue_name, queue_settings=settings)
    engine = make_engine(queue_settings=settings)

    @engine.activity("ok")
    async def ok(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    @engine.activity("dead")
    async def dead(payload: Any, ctx: ActivityContext) -> Any:
        raise ActivityError.non_retry(f"dead {payload}")

    await run_engine(engine)
    try:
        futures = await client.enqueue_many([("ok", i) for i in range(12)])
        for f in futures:
            await f.get_result(timeout=10)
        keys = QueueKeys(queue_name)
        ttl = await raw_redis.pttl(keys.result(futures[0].activity_id))
        assert 0 < ttl <= 60_000
        assert await raw_redis.zcard(keys.done) == 5
        assert await raw_redis.hlen(keys.jobs) == 0

        dead_futures = [await client.execute_activity("dead", i) for i in range(5)]
        for f in dead_futures:
            with pytest.raises(ActivityDeadLetteredError):
                await f.get_result(timeout=10)
        entries = await client.dead_letters()
        assert [e.record.payload for e in entries if e.record] == [2, 3, 4]  # oldest dropped
        assert await raw_redis.hlen(keys.dead) == 3

        await raw_redis.delete(keys.result(futures[0].activity_id))  # as if it had expired
        with pytest.raises(ActivityNotFoundError):
            await futures[0].get_result(timeout=5)
    finally:
        await client.aclose()


async def test_stats_and_metrics(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    metrics = InMemoryMetrics()
    await client.execute_activity("ok", 1, ActivityOption(delay=60))
    engine = make_engine(metrics=metrics)

    @engine.activity("ok")
    async def ok(payload: Any, ctx: ActivityContext) -> Any:
        await asyncio.sleep(0.01)
        return payload

    await run_engine(engine)
    futures = await client.enqueue_many([("ok", i) for i in range(10)])
    for f in futures:
        await f.get_result(timeout=10)
    stats = await client.get_stats()
    assert (stats.completed, stats.scheduled, stats.pending, stats.enqueued) == (10, 1, 0, 11)
    assert metrics.counters["activity_completed"] == 10
    assert len(metrics.durations["activity_execution"]) == 10
    assert all(d >= 0.01 for d in metrics.durations["activity_execution"])
    assert len(metrics.durations["activity_queue_wait"]) == 10
    assert stats.as_dict()["by_priority"] == {"critical": 0, "high": 0, "normal": 0, "low": 0}


async def test_queue_wait_counts_from_when_the_activity_became_ready(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    # Not from when it was enqueued: a delayed or timed activity waits from its due time, a
    # dead-lettered one sent back from when it was sent back.
    metrics = InMemoryMetrics()
    engine = make_engine(metrics=metrics, schedule_poll_interval=120)
    failed_once: set[str] = set()

    @engine.activity("ok")
    async def ok(payload: Any, ctx: ActivityContext) -> Any:
        if payload == "fail once" and ctx.activity_id not in failed_once:
            failed_once.add(ctx.activity_id)
            raise ActivityError.non_retry("first time")
        return payload

    await run_engine(engine)
    gap = 0.6
    delayed = await client.execute_activity("ok", 1, ActivityOption(delay=gap))
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=gap)
    timed = await client.execute_activity("ok", 2, ActivityOption(run_at=when))
    dead = await client.execute_activity("ok", "fail once")
    with pytest.raises(ActivityDeadLetteredError):
        await dead.get_result(timeout=10)
    await asyncio.sleep(gap)
    assert await client.requeue_dead_letter(dead.activity_id)
    for future in (delayed, timed, dead):
        await future.get_result(timeout=10)
    waits = metrics.durations["activity_queue_wait"]
    assert len(waits) == 4  # the failing one twice: its first run and its requeue
    assert all(w < gap / 2 for w in waits), waits


async def test_prometheus_sink(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    import prometheus_client

    from runnerq.prometheus import PrometheusMetrics

    registry = prometheus_client.CollectorRegistry()
    engine = make_engine(metrics=PrometheusMetrics(client.queue_name, registry=registry))

    @engine.activity("ok")
    async def ok(payload: Any, ctx: ActivityContext) -> Any:
        return None

    await run_engine(engine)
    for f in await client.enqueue_many([("ok", i) for i in range(3)]):
        await f.get_result(timeout=10)
    labels = {"queue": client.queue_name}
    assert registry.get_sample_value("runnerq_activity_completed_total", labels) == 3
    assert registry.get_sample_value("runnerq_activity_execution_seconds_count", labels) == 3
    text = prometheus_client.generate_latest(registry).decode()
    assert "runnerq_activity_queue_wait_seconds_bucket" in text


async def _value(value: Any) -> Any:
    return value


async def _equals(awaitable: Any, expected: Any) -> bool:
    return bool(await awaitable == expected)
