"""Bulk enqueue over several script calls (1,000 activities each), streamed on one
connection: applied in order, idempotency keys honoured across calls, and it carries on
after Redis lost its scripts."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityOption, ActivityPriority, SerializationError

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


async def test_mixed_options_in_one_call(client: ActivityClient) -> None:
    # Runs of ready, delayed, keyed and differently prioritised activities side by side in
    # one script call: each run is its own group in the call.
    later = ActivityOption(delay=3600)
    high = ActivityOption(priority=ActivityPriority.HIGH)
    entries: list[tuple[str, object, ActivityOption | None]] = []
    for i in range(40):
        kind = i % 5
        if kind == 3:
            options: ActivityOption | None = ActivityOption(idempotency_key=f"k{i % 2}")
        else:
            options = (None, later, high, None, None)[kind]
        entries.append(("t", {"i": i, "text": "naïve ✓"}, options))
    futures = await client.enqueue_many(entries)
    keyed = [f for i, f in enumerate(futures) if i % 5 == 3]
    assert [f.created for f in keyed] == [True, True] + [False] * 6
    stats = await client.get_stats()
    assert (stats.scheduled, stats.pending, stats.enqueued) == (8, 26, 34)
    order = await _claim_all(client)
    ids = [f.activity_id for f in futures]
    highs = [ids[i] for i in range(40) if i % 5 == 2]
    normal = [ids[i] for i in range(40) if i % 5 in (0, 4) or i in (3, 8)]
    assert order == highs + normal
    record = await client.store.redis.hget(client.store.keys.jobs, ids[0])
    assert isinstance(record, str) and '"text":"naïve ✓"' in record


async def test_a_bad_entry_in_a_later_call_enqueues_nothing(client: ActivityClient) -> None:
    entries: list[tuple[str, object]] = [("t", i) for i in range(N)]
    entries[N - 3] = ("t", {1, 2})  # not JSON, in the third script call's share
    with pytest.raises(SerializationError):
        await client.enqueue_many(entries)
    stats = await client.get_stats()
    assert (stats.enqueued, stats.pending) == (0, 0)
    assert await client.store.redis.hlen(client.store.keys.jobs) == 0


async def test_single_enqueues_after_redis_forgot_its_scripts(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    await client.execute_activity("t", 0)
    await raw_redis.script_flush()
    futures = [await client.execute_activity("t", i) for i in range(1, 4)]
    assert all(f.created for f in futures)
    stats = await client.get_stats()
    assert (stats.enqueued, stats.pending) == (4, 4)
