"""Durations as a user porting Runner-Q code gives them, against a real engine and Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityContext
from runnerq.cli import _enqueue, _parser
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory


async def test_a_lease_given_alone_runs_an_activity_longer_than_the_lease(
    make_engine: EngineFactory, run_engine: Any
) -> None:
    # Only the lease (WorkerEngine.builder().lease_duration(2) gives the same keywords): the
    # heartbeat, 10 s by default before, follows it at a third of it.
    engine = make_engine(lease_duration=2)
    assert engine.worker_settings.heartbeat_interval < 1
    runs = 0

    @engine.activity("slow")
    async def slow(payload: Any, ctx: ActivityContext) -> Any:
        nonlocal runs
        runs += 1
        await asyncio.sleep(2.5)  # outlives one lease: only the heartbeat keeps it
        return "done"

    await run_engine(engine)
    future = await engine.get_activity_executor().activity("slow").execute()
    assert await future.get_result(timeout=15) == "done"
    stats = await engine.get_stats()
    assert (stats.completed_count, stats.redelivered, runs) == (1, 0, 1)


async def test_timedelta_options_reach_the_record(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    future = await (
        client.activity("later")
        .delay(dt.timedelta(minutes=5))
        .timeout(dt.timedelta(seconds=90))
        .execute()
    )
    stats = await client.get_stats()
    assert (stats.scheduled, stats.pending_count) == (1, 0)
    raw = await raw_redis.hget(QueueKeys(client.queue_name).jobs, future.activity_id)
    assert raw is not None
    record = json.loads(raw)
    assert record["timeout"] == 90.0
    assert 299 < record["ready_at"] - record["created_at"] <= 300


async def test_cli_enqueue_takes_durations_with_units(
    redis_url: str, queue_name: str, client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    flags = [
        "--redis-url",
        redis_url,
        "--queue",
        queue_name,
        "--delay",
        "5m",
        "--timeout",
        "1500ms",
    ]
    args = _parser().parse_args(["enqueue", "t", *flags])
    assert await _enqueue(args) == 0
    stats = await client.get_stats()
    assert (stats.scheduled, stats.pending) == (1, 0)
    [(_, raw)] = (await raw_redis.hgetall(QueueKeys(queue_name).jobs)).items()
    assert json.loads(raw)["timeout"] == 1.5
