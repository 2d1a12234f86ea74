"""No bad record wedges a worker.

Records that runnerq's encoder could not have written (``NaN``, duplicate keys, bytes that are
not UTF-8, wrong types, missing fields, not JSON at all) are written straight into Redis
beside good activities. Every good one must complete once, every bad one must end in the
dead-letter queue as ``corrupt``, no lease may be left held, and ``stop()`` must return
within the grace period.

``RUNNERQ_PROPERTY_EXAMPLES`` sets how many examples the property test draws (a few in
``make test``; ``make chaos`` runs 500).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runnerq import ActivityClient, ActivityContext, ActivityDeadLetteredError, WorkerEngine
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory
from tests.support.strategies import json_values

EXAMPLES = int(os.environ.get("RUNNERQ_PROPERTY_EXAMPLES", "6"))
GRACE = 2.0


async def _plant(raw: aioredis.Redis, queue: str, activity_id: str, record: bytes) -> None:
    """Put a record in the queue's ready set as an enqueue would, bypassing the encoder."""
    keys = QueueKeys(queue)
    await raw.hset(keys.jobs, activity_id, record)
    await raw.zadd(keys.ready, {activity_id: 2 * 2**48})  # normal priority, first in line
    await raw.hincrby(keys.stats, "enqueued", 1)


async def test_a_nan_payload_does_not_hold_back_the_activities_beside_it(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, raw_redis: aioredis.Redis
) -> None:
    """The reported case: a record whose payload is NaN used to decode (json.loads takes
    NaN), run, and then fail to be written back, which held back every acknowledgement of
    its batch for ever."""
    before = await client.enqueue_many([("echo", i) for i in range(5)])
    await _plant(
        raw_redis, client.queue_name, "nan-1", b'{"id":"nan-1","type":"echo","payload":NaN}'
    )
    engine = make_engine(shutdown_grace=GRACE)

    @engine.activity("echo")
    async def echo(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    await run_engine(engine)
    after = await client.enqueue_many([("echo", i) for i in range(5, 10)])
    results = [await f.get_result(timeout=10) for f in [*before, *after]]
    assert results == list(range(10))
    with pytest.raises(ActivityDeadLetteredError, match="NaN is not JSON") as info:
        await client.future("nan-1").get_result(timeout=10)
    assert info.value.reason == "corrupt"
    started = time.monotonic()
    await engine.stop()
    assert time.monotonic() - started < GRACE + 5  # generous: the old code took 10 s or more
    keys = QueueKeys(client.queue_name)
    assert await raw_redis.hlen(keys.leases) == 0


# -- the property ------------------------------------------------------------------------

_json = json_values(max_leaves=6, max_text=8)


def _doc(activity_id: str, payload: Any = 1, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": activity_id, "type": "echo", "created_at": 1.0, "payload": payload}
    doc.update(fields)
    return doc


@st.composite
def _corrupt(draw: st.DrawFn, activity_id: str) -> bytes:
    """One record that must be refused, of a kind drawn at random."""
    kind = draw(
        st.sampled_from(
            [
                "constant",
                "duplicate",
                "not_utf8",
                "wrong_type",
                "missing",
                "not_json",
                "not_object",
                "trailing",
                "random_bytes",
            ]
        )
    )
    payload = draw(_json)
    text = json.dumps(_doc(activity_id, payload))
    if kind == "constant":
        constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        where = draw(st.sampled_from(["payload", "nested", "metadata", "timeout"]))
        if where == "payload":
            return f'{{"id":"{activity_id}","type":"echo","payload":{constant}}}'.encode()
        if where == "nested":
            return (
                f'{{"id":"{activity_id}","type":"echo","payload":[1,{{"x":{constant}}}]}}'.encode()
            )
        if where == "metadata":
            metadata = f'{{"m":{constant}}}'
            return (
                f'{{"id":"{activity_id}","type":"echo","metadata":{metadata},"payload":1}}'.encode()
            )
        return f'{{"id":"{activity_id}","type":"echo","timeout":{constant},"payload":1}}'.encode()
    if kind == "duplicate":
        key = draw(st.sampled_from(["id", "type", "payload", "inner"]))
        if key == "inner":
            return f'{{"id":"{activity_id}","type":"echo","payload":{{"k":1,"k":2}}}}'.encode()
        value = f'"{activity_id}"' if key == "id" else '"echo"' if key == "type" else "1"
        return f'{{"{key}":{value},'.encode() + text[1:].encode()
    if kind == "not_utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82"]))
        return f'{{"id":"{activity_id}","type":"echo","payload":"'.encode() + bad + b'"}'
    if kind == "wrong_type":
        wrong: list[tuple[str, Any]] = [
            ("id", 5),
            ("type", None),
            ("type", ""),
            ("priority", "urgent"),
            ("priority", 1),
            ("max_retries", -1),
            ("max_retries", "3"),
            ("max_retries", True),
            ("timeout", "60"),
            ("retry_count", 1.5),
            ("metadata", [1]),
            ("idempotency_key", 7),
            ("last_error", {"e": 1}),
            ("ready_at", "soon"),
            ("created_at", -1),
        ]
        name, value = draw(st.sampled_from(wrong))
        return json.dumps(_doc(activity_id, payload, **{name: value})).encode()
    if kind == "missing":
        doc = _doc(activity_id, payload)
        doc.pop(draw(st.sampled_from(["type", "payload"])))
        return json.dumps(doc).encode()
    if kind == "not_json":
        return draw(st.sampled_from([b"", b"{", b"not json", text[: len(text) // 2].encode()]))
    if kind == "not_object":
        return json.dumps(draw(st.lists(_json, max_size=3) | st.integers() | st.text())).encode()
    if kind == "trailing":
        return text.encode() + draw(st.sampled_from([b" x", b"{}", b"1"]))
    raw = draw(st.binary(min_size=1, max_size=40))
    try:
        json.loads(raw)
    except ValueError:
        return raw
    return b"\xff" + raw  # (random bytes that happen to be JSON: made not to be)


@given(data=st.data(), n_corrupt=st.integers(1, 4), n_good=st.integers(1, 12))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_corrupt_records_never_wedge_a_worker(
    redis_url: str, data: st.DataObject, n_corrupt: int, n_good: int
) -> None:
    corrupt = [data.draw(_corrupt(f"bad-{i}"), label=f"bad-{i}") for i in range(n_corrupt)]
    order = data.draw(
        st.permutations(
            [("bad", i) for i in range(n_corrupt)] + [("good", i) for i in range(n_good)]
        )
    )
    asyncio.run(_check(redis_url, corrupt, order))


_queues = iter(range(10**9))


async def _check(redis_url: str, corrupt: list[bytes], order: list[tuple[str, int]]) -> None:
    queue = f"corrupt-prop-{os.getpid()}-{next(_queues)}"
    keys = QueueKeys(queue)
    raw = aioredis.Redis.from_url(redis_url)
    client = ActivityClient(redis_url, queue)
    engine = WorkerEngine(redis_url, queue, max_workers=3, shutdown_grace=GRACE)
    runs: dict[int, int] = {}

    @engine.activity("echo")
    async def echo(payload: Any, ctx: ActivityContext) -> Any:
        runs[payload] = runs.get(payload, 0) + 1
        return payload

    try:
        good = {}
        for kind, i in order:  # in the drawn order, so bad and good share claim batches
            if kind == "bad":
                await _plant(raw, queue, f"bad-{i}", corrupt[i])
            else:
                good[i] = await client.execute_activity("echo", i)
        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        try:
            for i, future in good.items():
                assert await future.get_result(timeout=15) == i
            for i in range(len(corrupt)):
                with pytest.raises(ActivityDeadLetteredError) as info:
                    await client.future(f"bad-{i}").get_result(timeout=15)
                assert info.value.reason == "corrupt", (corrupt[i], info.value)
        finally:
            started = time.monotonic()
            await engine.stop()
            stop_took = time.monotonic() - started
            await asyncio.wait_for(task, 10)
        assert stop_took < GRACE + 5, stop_took  # (generous; the old code never got here)
        assert runs == dict.fromkeys(good, 1)  # every good one once
        assert await raw.hlen(keys.leases) == 0  # no lease left held
        assert await raw.zcard(keys.inflight) == 0
        assert await raw.hlen(keys.dead) == len(corrupt)
    finally:
        await engine.aclose()
        await client.aclose()
        await raw.delete(*[k async for k in raw.scan_iter(f"runnerq:{{{queue}}}:*")] or ["-"])
        await raw.aclose()
