"""An enqueue whose connection breaks after it was sent raises and is not sent again behind
the caller's back: Redis may already have applied it, and a resend would add it twice.

A real redis-server behind the chaos suite's TCP proxy: the proxy delays every chunk, so
the connection can be cut while the call has reached Redis but its reply has not come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from runnerq import ActivityClient, RedisConfig, RedisUnavailableError
from tests.chaos.proxy import ChaosProxy
from tests.support.polling import eventually

LATENCY = 0.3  # each way: the call reaches Redis at ~0.3 s, its reply would come ~0.3 s later


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ChaosProxy]:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with ChaosProxy("127.0.0.1", port) as chaos:
        yield chaos


async def _cut_once_applied(proxy: ChaosProxy, raw: aioredis.Redis, stats_key: str) -> None:
    # Watched on a direct connection: the call has reached Redis and been applied, and its
    # reply is still held by the proxy's latency when the connection is cut.
    await eventually(lambda: raw.hget(stats_key, "enqueued"), what="the enqueue applied")
    assert await proxy.cut() >= 1


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
async def test_a_lost_reply_raises_and_the_enqueue_is_applied_once(
    proxy: ChaosProxy, queue_name: str, raw_redis: aioredis.Redis, bulk: bool
) -> None:
    client = ActivityClient(proxy.url, queue_name, redis_config=RedisConfig(conn_timeout=5))
    try:
        await client.connect()
        await client.store.load_scripts()
        proxy.latency = LATENCY
        stats_key = client.store.keys.stats
        cutter = asyncio.create_task(_cut_once_applied(proxy, raw_redis, stats_key))
        enqueue = (
            client.enqueue_many([("t", i) for i in range(3)])
            if bulk
            else client.execute_activity("t", 1)
        )
        with pytest.raises(RedisUnavailableError):
            await enqueue
        await cutter
        proxy.latency = 0.0
        stats = await client.get_stats()  # a new connection: the client carries on
        assert stats.enqueued == (3 if bulk else 1)  # applied once, not resent
    finally:
        await client.aclose()
