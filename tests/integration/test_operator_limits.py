"""The operator's side of limits against a real redis-server: spec.limits written into the
queue's configuration (and removed), read back by the engine, and the depth read telling
the autoscaler what the limits let start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from runnerq_operator.redis_queues import (
    DepthQuery,
    RedisPools,
    read_depths,
    write_queue_config,
)
from runnerq_operator.redis_target import RedisTarget
from runnerq_operator.scaling import recommend
from runnerq_operator.spec import QueueConfigSpec, ScalingSpec, parse_limits

from runnerq import ActivityClient, ActivityOption, Limits
from runnerq.keys import QueueKeys
from runnerq.worker import new_worker_id


@pytest.fixture
async def pools() -> AsyncIterator[RedisPools]:
    p = RedisPools()
    yield p
    await p.aclose()


async def test_spec_limits_reach_the_engine_and_leave_with_the_spec(
    redis_url: str, queue_name: str, pools: RedisPools
) -> None:
    redis = pools.client(RedisTarget(redis_url))
    limits = parse_limits({"concurrency": 5, "types": {"pdf": {"rate": {"limit": 2}}}})
    await write_queue_config(redis, queue_name, QueueConfigSpec(max_retries=3, limits=limits))
    async with ActivityClient(redis_url, queue_name) as client:
        assert await client.get_limits() == limits
        await write_queue_config(redis, queue_name, QueueConfigSpec(max_retries=3))
        assert await client.get_limits() == Limits()
    config = await redis.hgetall(QueueKeys(queue_name).config)
    assert "limits" not in config and config["max_retries"] == "3"


async def test_depth_counts_only_what_the_limits_let_start(
    redis_url: str, queue_name: str, pools: RedisPools
) -> None:
    capped, limited, free = (f"{queue_name}-{n}" for n in ("capped", "rate", "free"))
    for queue, limits in (
        (capped, parse_limits({"concurrency": 20})),
        (limited, parse_limits({"rate": {"limit": 1, "periodSeconds": 3600, "burst": 3}})),
        (free, None),
    ):
        async with ActivityClient(redis_url, queue) as client:
            await client.set_limits(limits)
            await client.enqueue_many([("t", {"i": i}) for i in range(100)])
    async with ActivityClient(redis_url, capped) as client:
        await client.store.claim(8, 60.0, new_worker_id())
    async with ActivityClient(redis_url, limited) as client:
        await client.store.claim(10, 60.0, new_worker_id())  # takes the 3 tokens of the burst
    redis = pools.client(RedisTarget(redis_url))
    queries = [DepthQuery(q) for q in (capped, limited, free)]
    capped_d, limited_d, free_d = await read_depths(redis, queries, int(time.time() * 1000))

    assert (capped_d.ready, capped_d.in_flight, capped_d.eligible) == (92, 8, 12)
    assert capped_d.max_running == 20
    assert (limited_d.in_flight, limited_d.eligible, limited_d.max_running) == (3, 0, None)
    assert (free_d.ready, free_d.eligible, free_d.max_running) == (100, None, None)

    policy = ScalingSpec(max_replicas=50, target_per_replica=5)
    assert recommend(capped_d, policy, per_pod=5).replicas == 4  # ceil(20 / 5), not 20
    assert recommend(limited_d, policy, per_pod=5).replicas == 1  # what runs, not 97 ready
    assert recommend(free_d, policy, per_pod=5).replicas == 20


async def test_activities_with_a_limit_key_are_counted_ready(
    redis_url: str, queue_name: str, pools: RedisPools
) -> None:
    """They wait in a ready set of their own (fair between keys): the depth counts them."""
    async with ActivityClient(redis_url, queue_name) as client:
        await client.set_limits(parse_limits({"keys": {"concurrency": 1}}))
        for i in range(6):
            await client.execute_activity("t", i, ActivityOption(limit_key=f"tenant-{i % 2}"))
        await client.enqueue_many([("t", None)] * 4)
        assert (await client.get_stats()).pending == 10
    redis = pools.client(RedisTarget(redis_url))
    (depth,) = await read_depths(redis, [DepthQuery(queue_name)], int(time.time() * 1000))
    assert (depth.ready, depth.eligible) == (10, None)  # no queue rate or concurrency


async def test_unreadable_limits_scale_as_none(
    redis_url: str, queue_name: str, pools: RedisPools
) -> None:
    """The claim takes limits it cannot read as none; so does the autoscaler."""
    redis = pools.client(RedisTarget(redis_url))
    await redis.hset(QueueKeys(queue_name).config, "limits", "{not json")
    (depth,) = await read_depths(redis, [DepthQuery(queue_name)], int(time.time() * 1000))
    assert depth.eligible is None and depth.max_running is None


async def test_keys_a_handler_holds_back_are_counted_until_their_hold_ends(
    redis_url: str, queue_name: str, pools: RedisPools
) -> None:
    """What the operator's held-keys gauge exports: one ZCOUNT a queue, in the depth read."""
    redis = pools.client(RedisTarget(redis_url))
    keys = QueueKeys(queue_name)
    async with ActivityClient(redis_url, queue_name) as client:
        store = client.store
        for i in range(3):
            await client.execute_activity("t", i, ActivityOption(limit_key=f"tenant-{i}"))
        claim = await store.claim(3, 60.0, new_worker_id())
        assert claim is not None and len(claim.items) == 3
        holds = [("tenant-0", 0.3), ("tenant-1", 30.0), ("tenant-2", 30.0)]
        for (activity_id, _), (key, seconds) in zip(claim.items, holds, strict=True):
            call = store.throttle_call(activity_id, claim.token, seconds, f"hk:{key}")
            assert await store.run_calls([call]) == [1]

        async def held() -> int:
            (depth,) = await read_depths(redis, [DepthQuery(queue_name)], int(time.time() * 1000))
            return depth.held_keys

        assert await held() == 3
        assert set((await client.get_limit_stats()).held_keys) == {
            "tenant-0",
            "tenant-1",
            "tenant-2",
        }
        await asyncio.sleep(0.4)  # tenant-0's hold has ended
        assert await held() == 2
        # The next hold written sweeps the ended one out (its field too): nothing grows.
        await client.execute_activity("t", 9, ActivityOption(limit_key="tenant-9"))
        claim = await store.claim(1, 60.0, new_worker_id())
        assert claim is not None and len(claim.items) == 1
        call = store.throttle_call(claim.items[0][0], claim.token, 30.0, "hk:tenant-9")
        assert await store.run_calls([call]) == [1]
        assert await redis.zscore(keys.kholds, "tenant-0") is None
        assert await redis.hget(keys.limit_state, "hk:tenant-0") is None
        assert await held() == 3
