"""Redis restarting mid-run: workers reconnect and carry on, nothing acknowledged is lost,
and futures waiting across the restart still resolve."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from runnerq import (
    ActivityClient,
    ActivityContext,
    RedisConfig,
    RedisUnavailableError,
    WorkerEngine,
)
from tests.support.polling import eventually
from tests.support.redis_server import RedisServer


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True) as server:
        yield server


async def test_worker_and_waiters_survive_a_redis_restart(private_redis: RedisServer) -> None:
    url = private_redis.url
    release = asyncio.Event()
    done: list[int] = []
    engine = WorkerEngine(
        url,
        "restart",
        max_workers=5,
        heartbeat_interval=0.5,
        lease_duration=30,
        redis_config=RedisConfig(conn_timeout=1),
    )

    @engine.activity("blocked")
    async def blocked(payload: Any, ctx: ActivityContext) -> Any:
        await release.wait()
        return "released"

    @engine.activity("work")
    async def work(payload: Any, ctx: ActivityContext) -> Any:
        done.append(payload)
        return payload * 2

    client = ActivityClient(url, "restart", redis_config=RedisConfig(conn_timeout=1))
    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    try:
        before = await client.enqueue_many([("work", i) for i in range(20)])
        waiting = await client.execute_activity("blocked", None)
        assert [await f.get_result(timeout=10) for f in before] == [i * 2 for i in range(20)]
        await eventually(lambda: _stat_running(client, 1), what="blocked activity running")

        private_redis.stop()
        with pytest.raises(RedisUnavailableError):
            await client.execute_activity("work", 99)
        release.set()  # its completion must wait for Redis and then be recorded
        await asyncio.sleep(0.3)
        private_redis.start()

        assert await waiting.get_result(timeout=30) == "released"
        after = await client.enqueue_many([("work", i) for i in range(100, 120)])
        assert [await f.get_result(timeout=30) for f in after] == [i * 2 for i in range(100, 120)]
        stats = await client.get_stats()
        assert stats.completed == 41
        assert stats.pending == stats.running == 0
        assert not task.done()
    finally:
        await engine.stop()
        await task
        await engine.aclose()
        await client.aclose()


async def _stat_running(client: ActivityClient, n: int) -> bool:
    return (await client.get_stats()).running == n
