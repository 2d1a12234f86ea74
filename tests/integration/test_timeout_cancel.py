"""Per-activity timeouts, and cancellation of pending, scheduled and running activities."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import (
    ActivityCancelledError,
    ActivityClient,
    ActivityContext,
    ActivityDeadLetteredError,
    ActivityOption,
    ActivityTimedOutError,
    BackoffPolicy,
    InMemoryMetrics,
)
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory
from tests.support.polling import eventually


async def test_timeout_cancels_handler_and_retries(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    metrics = InMemoryMetrics()
    cancelled: list[int] = []
    engine = make_engine(metrics=metrics, backoff=BackoffPolicy(base=0.01, cap=0.01, jitter=0))

    @engine.activity("slow")
    async def slow(payload: Any, ctx: ActivityContext) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(ctx.retry_count)
            raise

    await run_engine(engine)
    future = await client.execute_activity("slow", None, ActivityOption(timeout=0.1, max_retries=1))
    with pytest.raises(ActivityTimedOutError) as info:
        await future.get_result(timeout=10)
    assert cancelled == [0, 1]
    assert metrics.counters["activity_timeout"] == 2
    assert metrics.counters["activity_retry"] == 1
    assert info.value.reason == "timeout"
    assert "timed out after 0.1s" in info.value.last_error


async def test_cancel_pending_removes_it(client: ActivityClient, raw_redis: aioredis.Redis) -> None:
    future = await client.execute_activity("never_runs", {"x": 1})
    assert await future.cancel()
    with pytest.raises(ActivityCancelledError):
        await future.get_result(timeout=5)
    keys = QueueKeys(client.queue_name)
    assert await raw_redis.zcard(keys.ready) == 0
    assert await raw_redis.hlen(keys.jobs) == 0
    stats = await client.get_stats()
    assert (stats.pending, stats.cancelled) == (0, 1)
    assert not await future.cancel()  # already finished


async def test_cancel_scheduled(client: ActivityClient) -> None:
    future = await client.execute_activity("later", None, ActivityOption(delay=60))
    assert (await client.get_stats()).scheduled == 1
    assert await client.cancel(future.activity_id)
    assert (await client.get_stats()).scheduled == 0
    with pytest.raises(ActivityCancelledError):
        await future.get_result(timeout=5)


async def test_cancel_running_stops_handler(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    started = asyncio.Event()
    seen: dict[str, Any] = {}
    metrics = InMemoryMetrics()
    engine = make_engine(metrics=metrics)

    @engine.activity("long")
    async def long(payload: Any, ctx: ActivityContext) -> Any:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["token"] = ctx.cancel_token.is_cancelled()
            seen["reason"] = ctx.cancel_token.reason
            raise
        return "finished"

    await run_engine(engine)
    future = await client.execute_activity("long", None)
    await asyncio.wait_for(started.wait(), 10)
    assert await future.cancel()
    with pytest.raises(ActivityCancelledError):
        await future.get_result(timeout=5)
    await eventually(lambda: _async(seen.get("token")), what="handler cancelled")
    assert seen == {"token": True, "reason": "cancelled"}
    stats = await client.get_stats()
    assert (stats.running, stats.completed, stats.cancelled) == (0, 0, 1)
    assert engine.worker is not None
    await eventually(lambda: _async(not engine.worker.running), what="slot freed")  # type: ignore[union-attr]
    assert metrics.counters["activity_cancelled"] == 1


async def _async(value: Any) -> Any:
    return value


async def test_one_slot_runs_on_after_its_activities_were_stopped(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    """Activities share long-lived slot tasks: a timeout (even one the handler swallows) or a
    cancellation of one activity must not leak into the next one the same slot runs, e.g.
    break the asyncio.timeout a later handler uses."""
    engine = make_engine(max_workers=1, prefetch=0)
    started = asyncio.Event()

    @engine.activity("stubborn")
    async def stubborn(payload: Any, ctx: ActivityContext) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "swallowed"  # defeats its own timeout: its result stands
        return "slept"

    @engine.activity("cancel_me")
    async def cancel_me(payload: Any, ctx: ActivityContext) -> Any:
        started.set()
        await asyncio.sleep(30)

    @engine.activity("raises_cancelled")
    async def raises_cancelled(payload: Any, ctx: ActivityContext) -> Any:
        raise asyncio.CancelledError  # a failure of its own, not a stop by the worker

    @engine.activity("own_timeout")
    async def own_timeout(payload: Any, ctx: ActivityContext) -> Any:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(10)
        except TimeoutError:
            pass
        await asyncio.sleep(0.01)
        return ctx.cancel_token.is_cancelled()

    await run_engine(engine)
    stubborn_future = await client.execute_activity(
        "stubborn", None, ActivityOption(timeout=0.2, max_retries=0)
    )
    assert await stubborn_future.get_result(timeout=10) == "swallowed"
    assert await (await client.execute_activity("own_timeout")).get_result(timeout=10) is False
    cancelled = await client.execute_activity("cancel_me")
    await asyncio.wait_for(started.wait(), 10)
    assert await client.cancel(cancelled.activity_id)
    with pytest.raises(ActivityCancelledError):
        await cancelled.get_result(timeout=10)
    assert await (await client.execute_activity("own_timeout")).get_result(timeout=10) is False
    failing = await client.execute_activity("raises_cancelled", None, ActivityOption(max_retries=0))
    with pytest.raises(ActivityDeadLetteredError) as info:
        await failing.get_result(timeout=10)
    assert info.value.reason == "retries_exhausted"
    assert await (await client.execute_activity("own_timeout")).get_result(timeout=10) is False
    assert engine.worker is not None and len(engine.worker.running) == 0
