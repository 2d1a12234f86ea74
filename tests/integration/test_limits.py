"""Limits enforced by the claim script (docs/limits.md), one claim at a time against a real
redis-server: what a claim takes, what stays pending, and what the transitions give back."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import (
    ActivityClient,
    ActivityContext,
    ActivityOption,
    ActivityPriority,
    ConfigurationError,
    KeyLimit,
    Limits,
    Rate,
    RateLimitedError,
    TypeLimit,
)
from runnerq.keys import QueueKeys
from runnerq.record import ActivityRecord, DeadLetterEntry, ResultDocument
from runnerq.store import Claim, QueueStore
from tests.conftest import EngineFactory


async def _claim(store: QueueStore, n: int = 100, lease: float = 30.0) -> Claim:
    claim = await store.claim(n, lease, "w")
    assert claim is not None
    return claim


async def _complete(store: QueueStore, claim: Claim, ids: list[str]) -> None:
    doc = ResultDocument.completed_json("null")
    replies = await store.run_calls([store.complete_call([(i, claim.token, doc) for i in ids])])
    assert [int(x) for x in replies[0]] == [1] * len(ids)


@pytest.fixture
async def store(client: ActivityClient) -> QueueStore:
    await client.store.load_scripts()
    return client.store


async def test_no_limits_claims_as_before(client: ActivityClient, store: QueueStore) -> None:
    await client.enqueue_many([("t", i) for i in range(5)])
    claim = await _claim(store)
    assert len(claim.items) == 5
    assert ":~" not in claim.token  # an unmarked lease: its transitions do nothing more
    assert store.claim_again_in == 0
    assert len(store.claim_call(1, 30.0, "w").keys) == 8  # the claim's keys as before


async def test_the_claim_takes_the_limits_keys_only_while_it_needs_them(
    client: ActivityClient, store: QueueStore
) -> None:
    await client.enqueue_many([("t", i) for i in range(6)])
    await client.set_limits(Limits(concurrency=2))
    call = store.claim_call(10, 30.0, "w")
    assert len(call.keys) == 8
    # Sent without them: nothing claimed, and the store knows to send them.
    skipped = store.parse_claim([await call.script(keys=call.keys, args=call.args)])
    assert skipped is not None and skipped.items == [] and store.claim_limited
    assert 0 < store.claim_again_in < 0.01
    assert len((await _claim(store)).items) == 2
    await client.set_limits(None)
    assert len((await _claim(store)).items) == 4
    assert not store.claim_limited
    assert len(store.claim_call(1, 30.0, "w").keys) == 8


async def test_one_config_flag_sends_claims_to_the_limited_path_until_nothing_needs_it(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    # A queue with no limits reads two config fields per claim: "lim" is set with limits,
    # a hold and a limit key, and the first claim that finds none of them clears it.
    keys = QueueKeys(client.queue_name)
    assert await raw_redis.hget(keys.config, "lim") is None
    await client.set_limits(Limits(concurrency=1))
    assert await raw_redis.hget(keys.config, "lim") == "1"
    await client.enqueue_many([("t", i) for i in range(3)])
    claim = await _claim(store)
    assert len(claim.items) == 1 and store.claim_limited
    await client.set_limits(None)
    assert await raw_redis.hget(keys.config, "lim") == "1"  # cleared by the claim, not here
    rest = await _claim(store, lease=0.2)
    assert len(rest.items) == 2 and not store.claim_limited
    assert await raw_redis.hget(keys.config, "lim") is None
    # A handler's hold sets it too, until the hold has passed.
    await store.run_calls([store.throttle_call(rest.items[0][0], rest.token, 0.3, "h:t")])
    assert await raw_redis.hget(keys.config, "lim") == "1"
    await _claim(store)
    assert store.claim_limited
    await asyncio.sleep(0.35)  # the hold's end, by Redis's clock: the next claim clears it
    await _claim(store)
    assert await raw_redis.hget(keys.config, "lim") is None
    assert not store.claim_limited


async def test_queue_concurrency_caps_the_leases_of_every_worker(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    await client.set_limits(Limits(concurrency=5))
    await client.enqueue_many([("t", i) for i in range(20)])
    first = await _claim(store, 3)
    assert len(first.items) == 3 and ":~" in first.token
    second = await store.claim(10, 30.0, "other")
    assert second is not None and len(second.items) == 2
    assert (await _claim(store)).items == []  # capped: stays pending, nothing used up
    stats = await client.get_stats()
    assert (stats.pending, stats.running, stats.failed, stats.retried) == (15, 5, 0, 0)
    await _complete(store, first, [first.items[0][0]])
    # A slot given back under limits wakes a waiting worker.
    assert "1" in await raw_redis.lrange(QueueKeys(client.queue_name).notify, 0, -1)
    assert len((await _claim(store)).items) == 1
    limit_stats = await client.get_limit_stats()
    assert limit_stats.throttled_queue >= 1 and limit_stats.eligible == 0


async def test_queue_rate_is_a_token_bucket_by_redis_time(
    client: ActivityClient, store: QueueStore
) -> None:
    await client.set_limits(Limits(rate=Rate(20, 1.0, burst=3)))
    await client.enqueue_many([("t", i) for i in range(50)])
    assert len((await _claim(store)).items) == 3  # the burst
    assert len((await _claim(store)).items) == 0
    assert 0 < store.claim_again_in <= 0.05  # the next token, 1/20 s away
    await asyncio.sleep(0.2)  # 4 tokens, capped at the burst: 3
    assert len((await _claim(store)).items) == 3


async def test_priorities_still_order_what_is_eligible(
    client: ActivityClient, store: QueueStore
) -> None:
    await client.set_limits(Limits(types={"slow": TypeLimit(concurrency=1)}))
    await client.execute_activity("slow", 1)
    await client.activity("slow").payload(2).priority("critical").execute()
    await client.activity("fast").payload(3).priority("low").execute()
    await client.activity("fast").payload(4).priority("high").execute()
    claim = await _claim(store)
    payloads = [raw.split('"payload":')[1][:-1] for _, raw in claim.items]
    assert payloads == ["2", "4", "3"]  # the critical slow one; the other waits for its slot
    stats = await client.get_limit_stats()
    assert stats.throttled_by_type == {"slow": 1}
    assert stats.running_by_type == {"slow": 1, "fast": 2}


async def test_a_type_slot_comes_back_with_every_transition_that_ends_a_lease(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    keys = QueueKeys(client.queue_name)
    await client.set_limits(Limits(types={"a": TypeLimit(concurrency=1)}))
    futures = await client.enqueue_many([("a", i) for i in range(4)])

    async def one() -> Claim:
        claim = await _claim(store, 10, lease=0.2)
        assert len(claim.items) == 1
        assert len((await _claim(store)).items) == 0  # the type's one slot is taken
        return claim

    claim = await one()  # reaped: the lease expires
    await asyncio.sleep(0.3)
    assert await store.reap() == 1
    claim = await one()  # released (a worker's shutdown)
    assert await store.release([(claim.items[0][0], claim.token)]) == 1
    claim = await one()  # cancelled while running
    assert await client.cancel(claim.items[0][0])
    claim = await one()  # completed
    await _complete(store, claim, [claim.items[0][0]])
    claim = await one()  # retried
    record = claim.items[0][1].replace('"payload"', '"retry_count":1,"payload"')
    await store.run_calls([store.retry_call(claim.items[0][0], claim.token, record, 0.0)])
    assert await raw_redis.hget(keys.limit_state, "c:a") is None
    assert await raw_redis.hlen(keys.limited) == 0
    await store.promote_due()
    assert len((await _claim(store, 10)).items) == 1  # the retried one's turn again
    assert len(futures) == 4


async def test_limits_change_at_runtime_with_the_next_claim(
    client: ActivityClient, store: QueueStore
) -> None:
    await client.enqueue_many([("t", i) for i in range(10)])
    await client.set_limits(Limits(concurrency=1))
    assert len((await _claim(store)).items) == 1
    await client.set_limits(Limits(concurrency=4))
    assert len((await _claim(store)).items) == 3
    await client.set_limits(None)
    assert await client.get_limits() == Limits()
    assert len((await _claim(store)).items) == 6


async def test_bad_limits_write_nothing(client: ActivityClient, raw_redis: aioredis.Redis) -> None:
    config = QueueKeys(client.queue_name).config
    good = Limits(concurrency=3)
    await client.set_limits(good)
    for text in (
        '{"rate": {"limit": -1}}',
        '{"rate": {"limit": 5, "period": 0}}',
        '{"concurrency": 2, "per_key": 1}',
        "not json",
    ):
        with pytest.raises(ConfigurationError):
            await client.store.set_config({"limits": text, "paused": True})
    with pytest.raises(TypeError):
        await client.set_limits({"concurrency": 2})  # type: ignore[arg-type]
    assert await raw_redis.hgetall(config) == {"limits": good.to_json(), "lim": "1"}
    assert await client.get_limits() == good
    await client.set_limits(Limits())  # nothing limited: no field ("lim" goes at a claim)
    assert await raw_redis.hgetall(config) == {"lim": "1"}


async def test_a_rate_limited_handler_holds_its_type_back_on_every_worker_without_a_retry(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, raw_redis: aioredis.Redis
) -> None:
    engine = make_engine(max_workers=4, default_max_retries=0)
    starts: list[tuple[str, int, float]] = []
    throttled_once = asyncio.Event()

    @engine.activity("remote")
    async def remote(payload: int, ctx: ActivityContext) -> int:
        starts.append(("remote", payload, time.monotonic()))
        if payload == 0 and not throttled_once.is_set():
            throttled_once.set()
            raise RateLimitedError(0.6)
        return payload

    @engine.activity("local")
    async def local(payload: int, ctx: ActivityContext) -> int:
        starts.append(("local", payload, time.monotonic()))
        return payload

    await run_engine(engine)
    first = await client.execute_activity("remote", 0)
    await asyncio.wait_for(throttled_once.wait(), 5)
    held_at = time.monotonic()
    second = await client.execute_activity("remote", 1)
    other = await client.execute_activity("local", 2)
    assert await other.get_result(timeout=5) == 2  # another type is not held
    assert await first.get_result(timeout=5) == 0  # no retries allowed, none used
    assert await second.get_result(timeout=5) == 1
    after_hold = [t - held_at for kind, _, t in starts[1:] if kind == "remote"]
    assert len(after_hold) == 2 and min(after_hold) >= 0.45  # held for its retry_after
    local_start = next(t for kind, _, t in starts if kind == "local")
    assert local_start - held_at < 0.45
    stats = await client.get_stats()
    assert (stats.failed, stats.retried, stats.completed, stats.throttled) == (0, 0, 3, 1)
    limit_stats = await client.get_limit_stats()
    assert limit_stats.held_types == {}  # the hold is over
    assert limit_stats.holds_by_type == {"remote": 1}


def _payloads(claim: Claim) -> list[str]:
    return [raw.split('"payload":')[1][:-1] for _, raw in claim.items]


async def test_keys_share_the_queue_fairly(client: ActivityClient, store: QueueStore) -> None:
    """A key with a long backlog and keys that came after it interleave (no limits needed)."""
    await client.enqueue_many([("t", f"a{i}", ActivityOption(limit_key="A")) for i in range(50)])
    await client.enqueue_many([("t", f"b{i}", ActivityOption(limit_key="B")) for i in range(5)])
    assert (await client.get_stats()).pending == 55
    first = _payloads(await _claim(store, 10))
    assert sorted(first) == sorted([f'"a{i}"' for i in range(5)] + [f'"b{i}"' for i in range(5)])
    await client.enqueue_many([("t", f"c{i}", ActivityOption(limit_key="C")) for i in range(3)])
    second = _payloads(await _claim(store, 6))
    assert sorted(second) == ['"a5"', '"a6"', '"a7"', '"c0"', '"c1"', '"c2"']


async def test_per_key_concurrency_and_rate(client: ActivityClient, store: QueueStore) -> None:
    await client.set_limits(Limits(keys=KeyLimit(concurrency=1)))
    for key in ("A", "B"):
        await client.enqueue_many(
            [("t", f"{key}{i}", ActivityOption(limit_key=key)) for i in range(3)]
        )
    await client.execute_activity("t", "free")  # no key: no key limit
    claim = await _claim(store)
    assert sorted(_payloads(claim)) == ['"A0"', '"B0"', '"free"']
    assert (await _claim(store)).items == []
    limit_stats = await client.get_limit_stats()
    assert limit_stats.throttled_by_key == {"A": 2, "B": 2}  # one per claim and key
    assert limit_stats.running_by_key == {"A": 1, "B": 1}
    assert limit_stats.eligible == 4
    a0 = next(i for i, raw in claim.items if '"A0"' in raw)
    await _complete(store, claim, [a0])
    assert _payloads(await _claim(store)) == ['"A1"']
    await client.set_limits(Limits(keys=KeyLimit(rate=Rate(1, 60.0))))  # one a minute, each
    assert sorted(_payloads(await _claim(store))) == ['"A2"', '"B1"']
    assert (await _claim(store)).items == []
    assert store.claim_again_in > 50  # the next token of either key


async def test_a_claim_reads_past_chunks_of_candidates_its_limits_hold_back(
    client: ActivityClient, store: QueueStore
) -> None:
    """The limited claim reads each ready set in chunks (16 for a claim of 1) as far as it
    goes: 40 critical activities of one key, held back by its concurrency, do not hide the
    normal ones behind them, nor change the order by priority."""
    await client.set_limits(Limits(keys=KeyLimit(concurrency=1)))
    critical = ActivityOption(limit_key="A", priority=ActivityPriority.CRITICAL)
    await client.enqueue_many([("t", f"A{i}", critical) for i in range(41)])
    await client.enqueue_many([("t", f"n{i}", ActivityOption(limit_key=f"k{i}")) for i in range(3)])
    await client.enqueue_many([("t", f"p{i}") for i in range(3)])
    assert _payloads(await _claim(store, 1)) == ['"A0"']  # by priority first
    taken = [_payloads(await _claim(store, 1)) for _ in range(6)]
    # then the normal ones, each ready set in its own order
    order = [t[0] for t in taken]
    assert [p for p in order if "n" in p] == ['"n0"', '"n1"', '"n2"']
    assert [p for p in order if "p" in p] == ['"p0"', '"p1"', '"p2"']
    assert (await _claim(store, 1)).items == []


async def test_an_activity_with_a_limit_key_goes_back_to_its_own_ready_set(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    """Reaped, released, retried (then promoted), dead-lettered and requeued, cancelled: it is
    always in the keyed ready set when ready, and its key is forgotten when it ends."""
    keys = QueueKeys(client.queue_name)
    await client.set_limits(Limits(keys=KeyLimit(concurrency=1)))
    future = await client.activity("t").payload(1).limit_key("A").execute()
    activity_id = future.activity_id

    async def in_keyed_ready() -> None:
        assert await raw_redis.zscore(keys.kready, activity_id) is not None
        assert await raw_redis.zscore(keys.ready, activity_id) is None
        assert (await client.get_stats()).pending == 1

    async def take(lease: float = 30.0) -> Claim:
        claim = await _claim(store, 10, lease)
        assert [i for i, _ in claim.items] == [activity_id]
        return claim

    await in_keyed_ready()
    await take(0.2)
    await asyncio.sleep(0.3)
    assert await store.reap() == 1
    await in_keyed_ready()
    claim = await take()
    assert await store.release([(activity_id, claim.token)]) == 1
    await in_keyed_ready()
    claim = await take()
    record = ActivityRecord.decode(claim.items[0][1])
    retry = store.retry_call(activity_id, claim.token, record.retried("x").encode(), 0.0)
    await store.run_calls([retry])
    await store.promote_due()
    await in_keyed_ready()
    claim = await take()
    entry = DeadLetterEntry(activity_id, "boom", "failed", 1.0, record)
    await store.run_calls([store.dead_letter_call(activity_id, claim.token, entry)])
    assert await raw_redis.hget(keys.keyof, activity_id) is None
    assert await store.requeue(activity_id)
    await in_keyed_ready()
    assert await raw_redis.hget(keys.keyof, activity_id) == "A"
    assert await client.cancel(activity_id)
    assert await raw_redis.zcard(keys.kready) == 0
    assert await raw_redis.hlen(keys.keyof) == 0
    assert await raw_redis.hlen(keys.limited) == 0
    assert await raw_redis.hget(keys.limit_state, "ck:A") is None
    # No unfinished activity with a limit key left: claims take the plain path again.
    await client.set_limits(None)
    await _claim(store)
    assert await raw_redis.hget(keys.config, "keyed") is None
    assert not store.claim_limited


async def test_a_rate_limited_handler_can_hold_its_key_back_instead(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine(max_workers=4)
    starts: list[tuple[str, float]] = []
    throttled_once = asyncio.Event()

    @engine.activity("call")
    async def call(payload: str, ctx: ActivityContext) -> str:
        starts.append((payload, time.monotonic()))
        if payload == "a0" and not throttled_once.is_set():
            throttled_once.set()
            raise RateLimitedError(0.6, hold="key")
        return payload

    await run_engine(engine)
    first = await client.activity("call").payload("a0").limit_key("A").execute()
    await asyncio.wait_for(throttled_once.wait(), 5)
    held_at = time.monotonic()
    same_key = await client.activity("call").payload("a1").limit_key("A").execute()
    other_key = await client.activity("call").payload("b0").limit_key("B").execute()
    assert await other_key.get_result(timeout=5) == "b0"
    assert await first.get_result(timeout=5) == "a0"
    assert await same_key.get_result(timeout=5) == "a1"
    started = {payload: at - held_at for payload, at in starts[1:]}
    assert started["b0"] < 0.45 <= min(started["a0"], started["a1"])
    assert (await client.get_limit_stats()).holds_by_key == {"A": 1}


async def _hash(raw: aioredis.Redis, key: str) -> dict[str, str]:
    return {str(f): str(v) for f, v in (await raw.hgetall(key)).items()}


async def test_slot_counters_match_the_live_leases_after_random_transitions(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    """Claims, completions, retries, dead letters, releases, cancels, reaps and promotions in
    a random order under type and key limits: the slot counters always equal the leases taken
    under limits, by type and by key, and keyed activities are only ever in the keyed set."""
    rng = random.Random(18)
    keys = QueueKeys(client.queue_name)
    await client.set_limits(
        Limits(types={"a": TypeLimit(concurrency=3)}, keys=KeyLimit(concurrency=2))
    )
    held: dict[str, str] = {}
    records: dict[str, str] = {}
    done = ResultDocument.completed_json("null")

    async def check() -> None:
        limited = await _hash(raw_redis, keys.limited)
        leases = await _hash(raw_redis, keys.leases)
        by_type: dict[str, int] = {}
        by_key: dict[str, int] = {}
        for activity_id, value in limited.items():
            assert ":~" in leases[activity_id]
            activity_type, key = value.split("\t")
            by_type[activity_type] = by_type.get(activity_type, 0) + 1
            if key:
                by_key[key] = by_key.get(key, 0) + 1
        state = await _hash(raw_redis, keys.limit_state)
        assert {f[2:]: int(v) for f, v in state.items() if f.startswith("c:")} == by_type
        assert {f[3:]: int(v) for f, v in state.items() if f.startswith("ck:")} == by_key
        assert by_type.get("a", 0) <= 3 and all(n <= 2 for n in by_key.values())
        keyed_ready = set(await raw_redis.zrange(keys.kready, 0, -1))
        assert keyed_ready <= set(await raw_redis.hkeys(keys.keyof))
        assert not keyed_ready & set(await raw_redis.zrange(keys.ready, 0, -1))

    for _ in range(300):
        op = rng.choice(["enqueue", "enqueue", "claim", "claim", "end", "end", "other"])
        if op == "enqueue":
            key = rng.choice(["k1", "k2", None])
            await client.execute_activity(rng.choice("ab"), 1, ActivityOption(limit_key=key))
        elif op == "claim":
            claim = await _claim(store, rng.randint(1, 5), rng.choice([30.0, 0.001]))
            for activity_id, raw in claim.items:
                held[activity_id] = claim.token
                records[activity_id] = raw
        elif op == "end" and held:
            activity_id = rng.choice(sorted(held))
            token = held.pop(activity_id)
            how = rng.choice(["complete", "retry", "dead", "release"])
            if how == "complete":
                await store.run_calls([store.complete_call([(activity_id, token, done)])])
            elif how == "retry":
                again = ActivityRecord.decode(records[activity_id]).retried("x").encode()
                await store.run_calls([store.retry_call(activity_id, token, again, 0.0)])
            elif how == "dead":
                entry = DeadLetterEntry(activity_id, "x", "failed", 1.0)
                await store.run_calls([store.dead_letter_call(activity_id, token, entry)])
            else:
                await store.release([(activity_id, token)])
        elif op == "other":
            what = rng.choice(["reap", "promote", "cancel"])
            if what == "reap":
                await store.reap()
            elif what == "promote":
                await store.promote_due()
            elif records:
                await client.cancel(rng.choice(sorted(records)))
        await check()
    stats = await client.get_stats()
    assert min(stats.completed, stats.dead_letter, stats.retried, stats.redelivered) > 0, stats
    assert (await client.get_limit_stats()).throttled > 0
