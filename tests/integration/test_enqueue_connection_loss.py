"""An enqueue whose connection breaks after it was sent raises and is not sent again behind
the caller's back: Redis may already have applied it, and a resend would add it twice.

A real redis-server behind the chaos suite's TCP proxy: the proxy delays every chunk, so
the connection can be cut while the call has reached Redis but its reply has not come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from runnerq import ActivityClient, RedisConfig, RedisUnavailableError
from tests.chaos.proxy import ChaosProxy

LATENCY = 0.3  # each way: the call reaches Redis at ~0.3 s, its reply would arrive at ~0.6 s


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ChaosProxy]:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with ChaosProxy("127.0.0.1", port) as chaos:
        yield chaos


async def _cut_before_the_reply(proxy: ChaosProxy) -> None:
    await asyncio.sleep(LATENCY * 1.5)
    assert await proxy.cut() >= 1


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
async def test_a_lost_reply_raises_and_the_enqueue_is_applied_once(
    proxy: ChaosProxy, queue_name: str, bulk: bool
) -> None:
    client = ActivityClient(proxy.url, queue_name, redis_config=RedisConfig(conn_timeout=5))
    try:
        await client.connect()
        await client.store.load_scripts()
        proxy.latency = LATENCY
        cutter = asyncio.create_task(_cut_before_the_reply(proxy))
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
