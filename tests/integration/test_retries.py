"""Retries with exponential backoff, the dead-letter queue, and the error mapping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import (
    ActivityClient,
    ActivityContext,
    ActivityDeadLetteredError,
    ActivityError,
    ActivityOption,
    BackoffPolicy,
    InMemoryMetrics,
    non_retryable,
)
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory
from tests.support.polling import eventually


async def test_retries_then_succeeds(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    attempts: list[int] = []
    metrics = InMemoryMetrics()
    engine = make_engine(
        backoff=BackoffPolicy(base=0.01, factor=2, cap=0.05, jitter=0), metrics=metrics
    )

    @engine.activity("flaky")
    async def flaky(payload: Any, ctx: ActivityContext) -> Any:
        attempts.append(ctx.retry_count)
        if ctx.retry_count < 2:
            raise ActivityError.retry("not yet")
        return "ok"

    await run_engine(engine)
    future = await client.execute_activity("flaky", None, ActivityOption(max_retries=3))
    assert await future.get_result(timeout=10) == "ok"
    assert attempts == [0, 1, 2]
    assert metrics.counters["activity_retry"] == 2
    assert metrics.counters["activity_completed"] == 1
    stats = await client.get_stats()
    assert (stats.completed, stats.retried, stats.failed, stats.dead_letter) == (1, 2, 2, 0)


async def test_backoff_delay_is_applied_by_redis_clock(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, raw_redis: aioredis.Redis
) -> None:
    """After a failure the activity waits in the schedule, due base*factor**(n-1) later."""
    engine = make_engine(backoff=BackoffPolicy(base=30, factor=2, cap=300, jitter=0))
    failed = asyncio.Event()

    @engine.activity("fails")
    async def fails(payload: Any, ctx: ActivityContext) -> Any:
        failed.set()
        raise RuntimeError("boom")

    await run_engine(engine)
    future = await client.execute_activity("fails", None)
    await asyncio.wait_for(failed.wait(), 10)
    keys = QueueKeys(client.queue_name)
    found = await eventually(lambda: raw_redis.zscore(keys.scheduled, future.activity_id))
    score = float(found or 0)
    seconds, micros = await raw_redis.time()
    now_ms = seconds * 1000 + micros // 1000
    assert 29_000 <= score - now_ms <= 30_000
    stored = str(await raw_redis.hget(keys.jobs, future.activity_id))
    assert '"retry_count":1' in stored
    assert "RuntimeError: boom" in stored


async def test_dead_letter_after_max_retries(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    calls = 0
    metrics = InMemoryMetrics()
    engine = make_engine(backoff=BackoffPolicy(base=0.01, cap=0.01, jitter=0), metrics=metrics)

    @engine.activity("always_fails")
    async def always_fails(payload: Any, ctx: ActivityContext) -> Any:
        nonlocal calls
        calls += 1
        raise ValueError(f"failure {calls}")

    await run_engine(engine)
    future = await client.execute_activity("always_fails", {"k": 1}, ActivityOption(max_retries=2))
    with pytest.raises(ActivityDeadLetteredError) as info:
        await future.get_result(timeout=10)
    assert calls == 3
    assert info.value.last_error == "ValueError: failure 3"
    assert info.value.reason == "retries_exhausted"
    assert metrics.counters["activity_dead_lettered"] == 1
    entries = await client.dead_letters()
    assert [e.id for e in entries] == [future.activity_id]
    assert entries[0].record is not None
    assert entries[0].record.payload == {"k": 1}
    assert entries[0].error == "ValueError: failure 3"


async def test_non_retryable_goes_to_dead_letter_at_once(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    calls = 0
    metrics = InMemoryMetrics()
    engine = make_engine(metrics=metrics)

    @engine.activity("bad")
    async def bad(payload: Any, ctx: ActivityContext) -> Any:
        nonlocal calls
        calls += 1
        with non_retryable("order payload"):
            int(payload["quantity"])

    await run_engine(engine)
    future = await client.execute_activity(
        "bad", {"quantity": "three"}, ActivityOption(max_retries=5)
    )
    with pytest.raises(ActivityDeadLetteredError) as info:
        await future.get_result(timeout=10)
    assert calls == 1
    assert info.value.reason == "non_retryable"
    assert "order payload: ValueError" in info.value.last_error
    assert metrics.counters["activity_failed_non_retry"] == 1
    assert (await client.get_stats()).retried == 0


async def test_requeue_from_dead_letter_queue(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    fail = True
    engine = make_engine()

    @engine.activity("sometimes")
    async def sometimes(payload: Any, ctx: ActivityContext) -> Any:
        if fail:
            raise ActivityError.non_retry("not now")
        return "second time lucky"

    await run_engine(engine)
    future = await client.execute_activity("sometimes", None)
    with pytest.raises(ActivityDeadLetteredError):
        await future.get_result(timeout=10)
    fail = False
    assert await client.requeue_dead_letter(future.activity_id)
    assert await future.get_result(timeout=10) == "second time lucky"
    assert (await client.get_stats()).dead_letter == 0
    assert not await client.requeue_dead_letter(future.activity_id)


async def test_purge_dead_letters(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine()

    @engine.activity("no")
    async def no(payload: Any, ctx: ActivityContext) -> Any:
        raise ActivityError.non_retry("no")

    await run_engine(engine)
    futures = [await client.execute_activity("no", i) for i in range(3)]
    for f in futures:
        with pytest.raises(ActivityDeadLetteredError):
            await f.get_result(timeout=10)
    assert await client.purge_dead_letters() == 3
    assert await client.dead_letters() == []
