"""The data the console reads (docs/history.md), written by the engine: each activity's event
history, progress reported by handlers, per-minute throughput, and the registries of queues
and workers. Against a real redis-server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from runnerq import ActivityClient, ActivityContext, ActivityOption, QueueSettings
from runnerq.history import HISTORY_CAP, ActivityEvent, progress_args
from runnerq.keys import QUEUES_KEY, QueueKeys
from runnerq.presence import list_queues
from runnerq.record import DeadLetterEntry, ResultDocument
from runnerq.store import Claim, QueueStore
from tests.conftest import EngineFactory, EngineRunner
from tests.support.polling import eventually
from tests.support.processes import terminate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(client: ActivityClient) -> QueueStore:
    await client.store.load_scripts()
    return client.store


async def _claim(store: QueueStore, worker: str = "w1", lease: float = 30.0) -> Claim:
    claim = await store.claim(10, lease, worker)
    assert claim is not None and claim.items, "nothing claimed"
    return claim


async def _promote(store: QueueStore) -> None:
    moved, _, _ = await store.promote_due()
    assert moved == 1


async def _stored(raw_redis: aioredis.Redis, store: QueueStore, activity_id: str) -> list[Any]:
    return [json.loads(e) for e in await raw_redis.lrange(store.keys.events(activity_id), 0, -1)]


async def test_each_transition_writes_its_event(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    future = await client.execute_activity("t", {"x": 1}, ActivityOption(max_retries=0))
    aid = future.activity_id
    # Pending: the enqueue writes nothing; the record gives "enqueued".
    assert await raw_redis.exists(store.keys.events(aid)) == 0
    assert [e.kind for e in await client.get_events(aid)] == ["enqueued"]

    # Claimed: shown from the lease while it runs, written when the lease ends.
    claim = await _claim(store, "worker-a")
    events = await client.get_events(aid)
    assert [e.kind for e in events] == ["enqueued", "claimed"]
    assert events[1].worker == "worker-a"

    # A failed attempt and its retry.
    record_json = claim.items[0][1]
    await store.run_calls([store.retry_call(aid, claim.token, record_json, 0.0, "boom " * 200, 1)])
    stored = await _stored(raw_redis, store, aid)
    assert [e["e"] for e in stored] == ["claimed", "failed", "retry"]
    assert stored[0]["w"] == "worker-a" and stored[1]["w"] == "worker-a"
    assert stored[1]["n"] == 1 and stored[1]["err"].startswith("boom")
    assert len(stored[1]["err"]) <= 503  # truncated
    assert stored[2]["at"] >= stored[1]["t"]

    # Lease expiry: reaped, "lease_lost".
    await _promote(store)
    await _claim(store, "worker-b", lease=0.05)
    await asyncio.sleep(0.1)
    assert await store.reap() == 1
    stored = await _stored(raw_redis, store, aid)
    assert [e["e"] for e in stored[3:]] == ["claimed", "lease_lost"]
    assert stored[4]["w"] == "worker-b"

    # Dead-lettered (with its reason), then requeued from the dead-letter queue.
    claim = await _claim(store, "worker-c")
    entry = DeadLetterEntry(aid, "it broke", "retries_exhausted", 0.0)
    await store.run_calls([store.dead_letter_call(aid, claim.token, entry)])
    assert await raw_redis.pttl(store.keys.events(aid)) > 0  # kept for a bounded time
    assert await client.requeue_dead_letter(aid) is False  # (no record in this entry)
    await raw_redis.hset(
        store.keys.dead,
        aid,
        DeadLetterEntry(aid, "it broke", "retries_exhausted", 0.0, _record(claim)).encode(),
    )
    assert await client.requeue_dead_letter(aid)
    assert await raw_redis.pttl(store.keys.events(aid)) == -1  # alive again: no TTL

    # Completed.
    claim = await _claim(store, "worker-d")
    doc = ResultDocument.completed_json("42")
    assert await store.run_calls([store.complete_call([(aid, claim.token, doc)])]) == [[1]]
    kinds = [e.kind for e in await client.get_events(aid)]
    assert kinds == [
        "claimed",
        "failed",
        "retry",
        "claimed",
        "lease_lost",
        "claimed",
        "dead_lettered",
        "requeued",
        "claimed",
        "completed",
    ]
    events = await client.get_events(aid)
    dead = events[6]
    assert (dead.reason, dead.error, dead.worker) == ("retries_exhausted", "it broke", "worker-c")
    assert events[-1].worker == "worker-d"
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    # Expires with the result.
    ttl = await raw_redis.pttl(store.keys.events(aid))
    result_ttl = await raw_redis.pttl(store.keys.result(aid))
    assert 0 < ttl <= client.settings.result_ttl * 1000
    assert abs(ttl - result_ttl) < 5000
    # Nothing of the lease, or of the flag that it has a history, is left behind.
    assert await raw_redis.hlen(store.keys.leases) == 0
    assert await raw_redis.hlen(store.keys.historied) == 0


def _record(claim: Claim) -> Any:
    from runnerq.record import ActivityRecord

    return ActivityRecord.decode(claim.items[0][1])


async def test_cancel_writes_its_event_and_the_history_expires_with_the_result(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    running = await client.execute_activity("t", 1)
    await _claim(store, "worker-a")
    pending = await client.execute_activity("t", 2)
    assert await pending.cancel()
    assert [e.kind for e in await client.get_events(pending.activity_id)] == ["cancelled"]
    assert await running.cancel()
    events = await client.get_events(running.activity_id)
    assert [e.kind for e in events] == ["claimed", "cancelled"]
    assert events[0].worker == "worker-a"
    assert await client.redis.hlen(store.keys.leases) == 0
    for aid in (pending.activity_id, running.activity_id):
        assert 0 < await raw_redis.pttl(store.keys.events(aid)) <= client.settings.result_ttl * 1000

    scheduled = await client.execute_activity("t", 3, ActivityOption(delay=60))
    assert await scheduled.cancel()
    assert [e.kind for e in await client.get_events(scheduled.activity_id)] == ["cancelled"]


async def test_the_history_keeps_the_last_events_only(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    future = await client.execute_activity("t", 1)
    aid = future.activity_id
    for _ in range(HISTORY_CAP // 2 + 3):  # two events each: claimed, throttled
        claim = await _claim(store)
        await store.run_calls([store.throttle_call(aid, claim.token, 0.0, None)])
        await _promote(store)
    stored = await _stored(raw_redis, store, aid)
    assert len(stored) == HISTORY_CAP
    assert stored[-1]["e"] == "throttled" and "at" in stored[-1]


async def test_release_writes_released(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    future = await client.execute_activity("t", 1)
    claim = await _claim(store, "worker-a")
    assert await store.release([(future.activity_id, claim.token)]) == 1
    stored = await _stored(raw_redis, store, future.activity_id)
    assert [e["e"] for e in stored] == ["claimed", "released"]


def test_every_key_of_a_queue_is_in_one_cluster_slot() -> None:
    keys = QueueKeys("emails")
    slot = key_slot(keys.ready.encode())
    named = [keys.events("a1"), keys.worker("host:1:ab"), keys.result("a1")]
    fields = [keys.leases, keys.progress, keys.minutes, keys.workers, keys.config]
    assert {key_slot(k.encode()) for k in named + fields} == {slot}
    # The queue registry is outside every queue: only plain commands write it.
    assert "{" not in QUEUES_KEY


async def test_minutes_count_completed_and_failed(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    futures = [
        await client.execute_activity("t", i, ActivityOption(max_retries=1)) for i in range(4)
    ]
    claim = await _claim(store)
    ids = [f.activity_id for f in futures]
    doc = ResultDocument.completed_json("1")
    calls = [store.complete_call([(i, claim.token, doc) for i in ids[:2]])]
    calls.append(store.retry_call(ids[2], claim.token, claim.items[2][1], 60.0, "x", 1))
    entry = DeadLetterEntry(ids[3], "no", "non_retryable", 0.0)
    calls.append(store.dead_letter_call(ids[3], claim.token, entry))
    await store.run_calls(calls)
    seen = await client.get_throughput()
    assert (seen.completed_hour, seen.failed_hour) == (2, 2)
    assert (seen.completed_day, seen.failed_day) == (2, 2)
    assert len(seen.minutes) == 60
    assert seen.minutes[-1][1:] == (2, 2) or seen.minutes[-2][1:] == (2, 2)


async def test_minutes_older_than_a_day_are_trimmed(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    now_minute = int((await raw_redis.time())[0]) // 60
    async with raw_redis.pipeline(transaction=False) as pipe:
        for i in range(3000):
            pipe.hset(store.keys.minutes, f"{now_minute - 2000 - i}:c", 1)
        await pipe.execute()
    future = await client.execute_activity("t", 1)
    claim = await _claim(store)
    doc = ResultDocument.completed_json("1")
    await store.run_calls([store.complete_call([(future.activity_id, claim.token, doc)])])
    fields = [str(f) for f in await raw_redis.hkeys(store.keys.minutes)]
    assert len(fields) == 1 and fields[0].endswith(":c")
    assert (await client.get_throughput()).completed_day == 1


# -- progress ----------------------------------------------------------------------------


def test_progress_validation() -> None:
    assert progress_args(0, None) == ("0.0", "null")
    assert progress_args(1, "done") == ("1.0", '"done"')
    for bad in (-0.01, 1.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="from 0 to 1"):
            progress_args(bad, None)
    for wrong in ("0.5", None, True):
        with pytest.raises(TypeError, match="must be a number"):
            progress_args(wrong, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="message"):
        progress_args(0.5, 3)  # type: ignore[arg-type]
    assert len(json.loads(progress_args(0.5, "m" * 10_000)[1])) <= 503


async def test_progress_is_readable_from_the_future_while_running_and_after(
    client: ActivityClient, make_engine: EngineFactory, run_engine: EngineRunner
) -> None:
    go_on = asyncio.Event()
    errors: list[str] = []
    engine = make_engine()

    @engine.activity("work")
    async def work(payload: Any, ctx: ActivityContext) -> str:
        for bad in (1.5, -1.0):
            try:
                await ctx.progress(bad)
            except ValueError as exc:
                errors.append(str(exc))
        for i in range(50):  # coalesced: a few writes, the last value wins
            await ctx.progress(i / 100, f"step {i}")
        await go_on.wait()
        await ctx.progress(0.9, "almost")
        await ctx.progress(1.0, "done")  # within the interval: flushed before the outcome
        return "ok"

    await run_engine(engine)
    future = await client.execute_activity("work")

    async def halfway() -> bool:
        seen = await future.progress()
        return seen is not None and seen.message == "step 49"

    await eventually(halfway, what="the last progress while running")
    seen = await future.progress()
    assert seen is not None and seen.fraction == 0.49 and seen.at > 0
    assert len(errors) == 2
    go_on.set()
    assert await future.get_result(timeout=10) == "ok"
    final = await future.progress()
    assert final is not None and (final.fraction, final.message) == (1.0, "done")
    assert await client.redis.hlen(client.store.keys.progress) == 0  # kept with the history
    completed = (await client.get_events(future.activity_id))[-1]
    assert completed.kind == "completed" and completed.progress == final
    assert await client.get_progress("no-such-activity") is None


async def test_progress_is_not_written_without_the_lease(
    client: ActivityClient, store: QueueStore
) -> None:
    future = await client.execute_activity("t", 1)
    claim = await _claim(store)
    assert await store.report_progress(future.activity_id, claim.token, "0.5", "null")
    assert not await store.report_progress(future.activity_id, "someone:1", "0.7", "null")
    seen = await future.progress()
    assert seen is not None and seen.fraction == 0.5


# -- registries ----------------------------------------------------------------------------


async def test_queue_registry_lists_queues_of_clients_and_workers(
    redis_url: str, queue_name: str, make_engine: EngineFactory, run_engine: EngineRunner
) -> None:
    producer = ActivityClient(redis_url, f"{queue_name}-produced")
    try:
        await producer.execute_activity("t", 1)
        await producer.execute_activity("t", 2)
        engine = make_engine(queue_name=f"{queue_name}-worked")
        await run_engine(engine)
        queues = await eventually(
            lambda: _has(producer.redis, f"{queue_name}-worked"), what="the worker's queue"
        )
        assert f"{queue_name}-produced" in queues
    finally:
        await producer.aclose()


async def _has(redis: aioredis.Redis, queue: str) -> list[str]:
    queues = await list_queues(redis)
    return queues if queue in queues else []


def _worker(redis_url: str, queue: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runnerq",
            "worker",
            "tests.apps.crash_app:engine",
            "--redis-url",
            redis_url,
            "--queue",
            queue,
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env={**os.environ, "CRASH_LEASE": "0.8", "POD_NAME": "pod-7"},
        stdin=subprocess.DEVNULL,
    )


async def test_worker_registry_entries_vanish_after_their_ttl_when_killed(
    client: ActivityClient, redis_url: str, raw_redis: aioredis.Redis
) -> None:
    queue = client.queue_name
    proc = _worker(redis_url, queue)
    try:
        workers = await eventually(client.list_workers, timeout=30, what="the worker's entry")
        (worker,) = workers
        assert worker.pid == proc.pid and worker.pod == "pod-7"
        assert worker.slots >= 1 and worker.busy == 0 and worker.version
        assert worker.started_at <= worker.last_seen
        ttl = await raw_redis.pttl(client.store.keys.worker(worker.id))
        assert 0 < ttl <= 1000  # 3 heartbeats (of CRASH_LEASE / 4), at least 1 s
        assert queue in await list_queues(raw_redis)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        async def gone() -> bool:
            return not await client.list_workers()

        await eventually(gone, timeout=10, what="the killed worker's entry expiring")
    finally:
        terminate(proc)


async def test_a_worker_that_stops_leaves_the_registry(
    client: ActivityClient, make_engine: EngineFactory, run_engine: EngineRunner
) -> None:
    engine = make_engine(heartbeat_interval=0.1)
    await run_engine(engine)
    await eventually(client.list_workers, what="the worker's entry")
    await engine.stop()
    assert await client.list_workers() == []


def test_events_decode_what_they_can() -> None:
    from runnerq.history import parse_events

    raws = ['{"t":1000,"e":"retry","at":3000}', "not json", '{"e":"x"}', '{"t":5,"e":1}']
    assert parse_events(raws) == [ActivityEvent("retry", 1.0, retry_at=3.0)]


async def test_a_first_completion_writes_no_history_list(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    """An activity with no history list yet gets none (no key per completion): its claim is
    in the lease token its result document holds, its completion time in `done`."""
    future = await client.execute_activity("t", 1)
    claim = await _claim(store, "worker-a")
    doc = ResultDocument.completed_json('{"n": 1}', claim.token)
    await store.run_calls([store.complete_call([(future.activity_id, claim.token, doc)])])
    assert await raw_redis.exists(store.keys.events(future.activity_id)) == 0
    assert await future.get_result(timeout=5) == {"n": 1}
    events = await client.get_events(future.activity_id)
    assert [(e.kind, e.worker) for e in events] == [
        ("claimed", "worker-a"),
        ("completed", "worker-a"),
    ]
    assert events[0].at == claim.now
    done_at = await raw_redis.zscore(store.keys.done, future.activity_id)
    assert done_at is not None and events[1].at == done_at / 1000
    # Once `done` dropped it (its cap), the time comes from the result's TTL.
    await raw_redis.zrem(store.keys.done, future.activity_id)
    again = await client.get_events(future.activity_id)
    assert abs(again[1].at - events[1].at) < 2.0
    assert await raw_redis.hlen(store.keys.historied) == 0


async def test_a_completion_sent_without_the_history_key_it_needs_is_handed_back(
    client: ActivityClient, store: QueueStore, raw_redis: aioredis.Redis
) -> None:
    """The hot path sends an activity's history key only when the worker knows it has a
    list (a retry count, progress). One whose list came from elsewhere (a release, a reap,
    a requeue) is answered 2 and left as it was, lease and all; sent again with its key, it
    completes with its events. Those beside it in the call complete as usual."""
    released = await client.execute_activity("t", 1)
    claim = await _claim(store, "worker-a")
    assert await store.release([(released.activity_id, claim.token)]) == 1
    plain = await client.execute_activity("t", 2)
    claim = await _claim(store, "worker-b")
    assert {i for i, _ in claim.items} == {released.activity_id, plain.activity_id}
    doc = ResultDocument.completed_json("1", claim.token)
    items = [(i, claim.token, doc, False) for i in (released.activity_id, plain.activity_id)]
    assert await store.run_calls([store.complete_call(items)]) == [[2, 1]]
    assert await raw_redis.hget(store.keys.leases, released.activity_id) == claim.token
    assert await raw_redis.exists(store.keys.result(released.activity_id)) == 0
    assert [e["e"] for e in await _stored(raw_redis, store, released.activity_id)] == [
        "claimed",
        "released",
    ]
    again = [(released.activity_id, claim.token, doc, True)]
    assert await store.run_calls([store.complete_call(again)]) == [[1]]
    assert [e.kind for e in await client.get_events(released.activity_id)] == [
        "claimed",
        "released",
        "claimed",
        "completed",
    ]
    assert await raw_redis.hlen(store.keys.historied) == 0
    assert await raw_redis.exists(store.keys.events(plain.activity_id)) == 0


async def test_a_worker_completes_a_released_activity_with_its_history(
    client: ActivityClient, store: QueueStore, make_engine: EngineFactory, run_engine: EngineRunner
) -> None:
    """End to end through the ack batcher: the released activity's first completion call is
    handed back and sent again with its history key; nothing is lost or run twice."""
    future = await client.execute_activity("t", 1)
    claim = await _claim(store, "worker-a")
    assert await store.release([(future.activity_id, claim.token)]) == 1
    others = [await client.execute_activity("t", i) for i in range(20)]  # no history
    runs: list[str] = []
    engine = make_engine()

    @engine.activity("t")
    async def t(payload: Any, ctx: ActivityContext) -> int:
        runs.append(ctx.activity_id)
        return 7

    await run_engine(engine)
    assert await future.get_result(timeout=10) == 7
    for other in others:
        assert await other.get_result(timeout=10) == 7
    assert sorted(runs) == sorted([future.activity_id, *(o.activity_id for o in others)])
    kinds = [e.kind for e in await client.get_events(future.activity_id)]
    assert kinds == ["claimed", "released", "claimed", "completed"]
    assert await client.redis.hlen(store.keys.historied) == 0
    assert await client.redis.hlen(store.keys.leases) == 0


async def test_a_queue_without_claim_history_keeps_everything_but_the_claims(
    client: ActivityClient,
    make_engine: EngineFactory,
    run_engine: EngineRunner,
    raw_redis: aioredis.Redis,
) -> None:
    """QueueSettings(claim_history=False): leases carry no claim time and results no lease
    (the hot path's part of the history); events still say completed (from `done`), failed,
    retry and the rest, only "claimed" is missing."""
    settings = QueueSettings(client.queue_name, claim_history=False)
    engine = make_engine(queue_settings=settings)
    tokens: list[str] = []
    tries: dict[str, int] = {}

    @engine.activity("t")
    async def t(payload: Any, ctx: ActivityContext) -> int:
        tokens.append(str(await raw_redis.hget(client.store.keys.leases, ctx.activity_id)))
        tries[ctx.activity_id] = tries.get(ctx.activity_id, 0) + 1
        if payload == "fail-once" and tries[ctx.activity_id] == 1:
            raise RuntimeError("first try fails")
        return 1

    await run_engine(engine)
    first = await client.execute_activity("t", "ok")
    retried = await client.execute_activity("t", "fail-once", ActivityOption(max_retries=1))
    assert await first.get_result(timeout=10) == 1
    assert await retried.get_result(timeout=20) == 1
    assert tokens and all("@" not in token for token in tokens)
    result = json.loads(str(await raw_redis.get(client.store.keys.result(first.activity_id))))
    assert "lease" not in result
    assert [(e.kind, e.worker) for e in await client.get_events(first.activity_id)] == [
        ("completed", None)
    ]
    kinds = [e.kind for e in await client.get_events(retried.activity_id)]
    assert kinds == ["failed", "retry", "completed"]
