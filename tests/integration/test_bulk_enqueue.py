"""Bulk enqueue over several script calls (1,000 activities each), streamed on one
connection: applied in order, idempotency keys honoured across calls, and it carries on
after Redis lost its scripts."""

from __future__ import annotations

import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityOption, ActivityPriority

N = 2_500  # three script calls


async def _claim_all(client: ActivityClient) -> list[str]:
    order: list[str] = []
    while claim := await client.store.claim(500, 30.0, "test-worker"):
        if not claim.items:
            break
        order += [activity_id for activity_id, _ in claim.items]
    return order


async def test_many_calls_keep_fifo_and_priority(client: ActivityClient) -> None:
    high = ActivityOption(priority=ActivityPriority.HIGH)
    entries = [("t", i, high if i % 7 == 0 else None) for i in range(N)]
    futures = await client.enqueue_many(entries)
    assert len(futures) == N and all(f.created for f in futures)
    ids = [f.activity_id for f in futures]
    expected = [ids[i] for i in range(N) if i % 7 == 0] + [ids[i] for i in range(N) if i % 7]
    assert await _claim_all(client) == expected
    stats = await client.get_stats()
    assert (stats.enqueued, stats.running) == (N, N)


async def test_idempotency_and_delays_across_calls(client: ActivityClient) -> None:
    first = await client.enqueue_many(
        [("t", i, ActivityOption(idempotency_key=f"k{i % 1200}")) for i in range(N)]
    )
    # Keys repeat 1,200 activities apart: the repeats sit in later script calls.
    assert sum(f.created for f in first) == 1200
    for i, future in enumerate(first):
        assert future.activity_id == first[i % 1200].activity_id
    delayed = await client.enqueue_many([("t", i, ActivityOption(delay=3600)) for i in range(1500)])
    stats = await client.get_stats()
    assert (stats.pending, stats.scheduled) == (1200, 1500)
    assert len({f.activity_id for f in delayed}) == 1500


async def test_redis_forgetting_its_scripts(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    await client.enqueue_many([("t", i) for i in range(10)])
    await raw_redis.script_flush()
    futures = await client.enqueue_many([("t", i) for i in range(N)])
    assert all(f.created for f in futures)
    assert (await client.get_stats()).pending == N + 10
    # The connection went back to the pool in a usable state.
    assert (await client.execute_activity("t", "after")).created
