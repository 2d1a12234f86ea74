"""A waiter never misses its result because the results subscription was cut: a result
stored while the subscription was away is read again once it is back.

redis-py made the subscription again on its own after a lost connection; a completion
announced before it had subscribed again was lost, and its waiter waited for ever (the
Redis-restart test failed about one run in three)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from runnerq import ActivityClient
from tests.support.polling import eventually


async def _value(value: bool) -> bool:
    return value


async def test_a_result_stored_while_the_subscription_is_cut_is_not_missed(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    future = await client.execute_activity("t", 1)
    store = client.store
    await store.load_scripts()
    waiting = asyncio.create_task(future.get_result(timeout=20))
    await eventually(lambda: _subscribers(raw_redis, store.keys.done_channel), what="subscribed")
    claim = await store.claim(1, 30, "w")
    assert claim is not None
    for _ in range(3):  # each time: cut the subscription, complete at once
        await raw_redis.client_kill_filter(_type="pubsub")
    await store.run_calls(
        [
            store.complete_call(
                [(future.activity_id, claim.token, '{"status":"completed","result":7}')]
            )
        ]
    )
    assert await waiting == 7


async def _subscribers(raw: aioredis.Redis, channel: str) -> bool:
    counts = await raw.pubsub_numsub(channel)
    return bool(counts and int(counts[0][1]) > 0)
