"""An enqueue whose connection breaks after it was sent raises and is not sent again behind
the caller's back: Redis may already have applied it, and a resend would add it twice.

A real redis-server behind the chaos suite's TCP proxy: the proxy holds Redis's replies, so
the connection is cut once the call has reached Redis and run, while its reply is still held
(an event, not a race against a delay: the reply cannot come back first however slow the
machine is).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from runnerq import (
    ActivityClient,
    BulkEnqueueError,
    BulkEnqueueUnavailableError,
    RedisConfig,
    RedisUnavailableError,
)
from tests.chaos.proxy import ChaosProxy
from tests.support.polling import eventually
from tests.support.redis_server import RedisServer


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ChaosProxy]:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with ChaosProxy("127.0.0.1", port) as chaos:
        yield chaos


@pytest.fixture
async def proxied(proxy: ChaosProxy, queue_name: str) -> AsyncIterator[ActivityClient]:
    """A connected client whose connections go through the proxy."""
    client = ActivityClient(proxy.url, queue_name, redis_config=RedisConfig(conn_timeout=5))
    try:
        await client.connect()
        await client.store.load_scripts()
        yield client
    finally:
        await client.aclose()


async def _cut_once_applied(proxy: ChaosProxy, raw: aioredis.Redis, stats_key: str) -> None:
    # Watched on a direct connection: the call has reached Redis and been applied, and its
    # reply is held by the proxy until the connection is cut.
    await eventually(lambda: raw.hget(stats_key, "enqueued"), what="the enqueue applied")
    assert await proxy.cut() >= 1
    proxy.release_replies()  # for the connections opened from now on


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
async def test_a_lost_reply_raises_and_the_enqueue_is_applied_once(
    proxy: ChaosProxy, queue_name: str, raw_redis: aioredis.Redis, bulk: bool
) -> None:
    client = ActivityClient(proxy.url, queue_name, redis_config=RedisConfig(conn_timeout=5))
    try:
        await client.connect()
        await client.store.load_scripts()
        proxy.hold_replies()
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
        stats = await client.get_stats()  # a new connection: the client carries on
        assert stats.enqueued == (3 if bulk else 1)  # applied once, not resent
    finally:
        await client.aclose()


async def test_a_bulk_cut_off_part_way_says_what_went_in(
    proxy: ChaosProxy, proxied: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    # 3,500 entries go as four calls, all written before the replies are read; Redis goes
    # away after the first reply (a bulk without keys is answered by its count).
    proxy.close_after_replies(len(b"*1\r\n:1000\r\n"))
    with pytest.raises(BulkEnqueueError) as caught:
        await proxied.enqueue_many([("t", i) for i in range(3500)])
    error = caught.value
    assert isinstance(error, BulkEnqueueUnavailableError)
    assert isinstance(error, RedisUnavailableError)  # what callers already catch
    assert (len(error.applied), len(error.unknown), error.unsent) == (1000, 2500, 0)
    assert "1000 enqueued, 2500 unknown, 0 not sent" in str(error)
    applied = [f.activity_id for f in error.applied]
    jobs = proxied.store.keys.jobs
    stored = set(await raw_redis.hkeys(jobs))
    assert set(applied) <= stored  # every one said to be in is in
    assert stored <= set(applied) | set(error.unknown)  # nothing else is
    assert all(f.created for f in error.applied)


async def test_a_bulk_that_cannot_reach_redis_says_none_went_in(
    proxy: ChaosProxy, queue_name: str, raw_redis: aioredis.Redis
) -> None:
    await proxy.aclose()  # nothing listens there any more: connections are refused
    # A client that opened no connection yet (the pool connects on first use).
    client = ActivityClient(proxy.url, queue_name, redis_config=RedisConfig(conn_timeout=1))
    try:
        with pytest.raises(BulkEnqueueError) as caught:
            await client.enqueue_many([("t", i) for i in range(1500)])
        error = caught.value
        # None went in. Where the split between unknown and never sent falls depends on
        # when the socket tells (a write into a reset socket may fail or seem to pass);
        # either way they add up, in order.
        assert error.applied == []
        assert len(error.unknown) + error.unsent == 1500
        assert len(error.unknown) % 1000 == 0 or error.unsent == 0  # whole batches
        assert await raw_redis.hlen(client.store.keys.jobs) == 0
    finally:
        await client.aclose()


async def test_a_bulk_redis_refuses_is_a_bulk_error_not_an_unavailable_one() -> None:
    # An error reply (out of memory) is not a connection problem: sending again as it is will
    # not help, so it is not a RedisUnavailableError (which callers may retry on).
    with RedisServer() as server:
        client = ActivityClient(server.url, "oom")
        try:
            await client.connect()
            await client.store.load_scripts()
            await client.redis.config_set("maxmemory", 1)  # every write is refused
            with pytest.raises(BulkEnqueueError) as caught:
                await client.enqueue_many([("t", i) for i in range(1500)])
            error = caught.value
            assert not isinstance(error, RedisUnavailableError)
            assert "maxmemory" in str(error)
            assert error.applied == []
            assert len(error.unknown) + error.unsent == 1500
            await client.redis.config_set("maxmemory", 0)
            assert (await client.get_stats()).enqueued == 0
        finally:
            await client.aclose()
