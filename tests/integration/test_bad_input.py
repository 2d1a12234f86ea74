"""Bad input gets a clear error and loses nothing; the worker keeps running."""

from __future__ import annotations

import math
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import (
    ActivityClient,
    ActivityContext,
    ActivityDeadLetteredError,
    ConfigurationError,
    QueueSettings,
    SerializationError,
)
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory


async def _nothing_written(raw: aioredis.Redis, queue: str) -> None:
    assert await raw.keys(f"runnerq:{{{queue}}}:*") == []


@pytest.mark.parametrize(
    "payload",
    [object(), {"when": {1, 2}}, math.nan, {"x": b"bytes"}],
    ids=["object", "set", "nan", "bytes"],
)
async def test_payload_not_json_is_refused(
    client: ActivityClient, raw_redis: aioredis.Redis, payload: Any
) -> None:
    with pytest.raises(SerializationError, match="payload is not JSON-serializable"):
        await client.execute_activity("t", payload)
    await _nothing_written(raw_redis, client.queue_name)


async def test_payload_over_limit_is_refused(
    redis_url: str, queue_name: str, raw_redis: aioredis.Redis
) -> None:
    client = ActivityClient(
        redis_url, queue_name, queue_settings=QueueSettings(queue_name, max_payload_bytes=1000)
    )
    try:
        await client.execute_activity("t", "x" * 900)
        with pytest.raises(SerializationError, match="over the limit of 1000 bytes"):
            await client.execute_activity("t", "x" * 1000)
        assert (await client.get_stats()).enqueued == 1
    finally:
        await client.aclose()


async def test_default_payload_limit_is_one_mib(client: ActivityClient) -> None:
    with pytest.raises(SerializationError):
        await client.execute_activity("t", "x" * (1024 * 1024))


async def test_bulk_enqueue_with_one_bad_payload_writes_nothing(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    with pytest.raises(SerializationError):
        await client.enqueue_many([("t", 1), ("t", object()), ("t", 3)])
    await _nothing_written(raw_redis, client.queue_name)


async def test_invalid_activity_type_and_options(client: ActivityClient) -> None:
    with pytest.raises(ConfigurationError):
        await client.execute_activity("", {})
    with pytest.raises(ConfigurationError):
        client.activity("t").max_retries(-1).options()
    with pytest.raises(ValueError, match="unknown priority"):
        client.activity("t").priority("urgent")


async def test_unknown_activity_type_is_dead_lettered(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine()

    @engine.activity("known")
    async def known(payload: Any, ctx: ActivityContext) -> Any:
        return "fine"

    await run_engine(engine)
    unknown = await client.execute_activity("mystery", {"a": 1})
    with pytest.raises(ActivityDeadLetteredError) as info:
        await unknown.get_result(timeout=10)
    assert info.value.reason == "unknown_type"
    assert "no handler registered for activity type 'mystery'" in info.value.last_error
    assert await (await client.execute_activity("known", None)).get_result(timeout=10) == "fine"
    [entry] = await client.dead_letters()
    assert entry.record is not None
    assert entry.record.payload == {"a": 1}


@pytest.mark.parametrize(
    "raw",
    [
        "not json at all",
        "[1, 2, 3]",
        '{"id": "x", "payload": 1}',
        '{"id": "x", "type": 5, "payload": 1}',
        '{"id": "x", "type": "t", "payload": 1, "retry_count": "many"}',
        "\udcff",
    ],
    ids=["text", "array", "no-type", "type-not-string", "bad-retry-count", "bad-utf8"],
)
async def test_corrupt_entry_is_dead_lettered_and_worker_continues(
    client: ActivityClient,
    make_engine: EngineFactory,
    run_engine: Any,
    raw_redis: aioredis.Redis,
    raw: str,
) -> None:
    keys = QueueKeys(client.queue_name)
    data = raw.encode("utf-8", "surrogateescape")
    await raw_redis.hset(keys.jobs, "corrupt-1", data)
    await raw_redis.zadd(keys.ready, {"corrupt-1": 0})
    engine = make_engine()

    @engine.activity("t")
    async def t(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    await run_engine(engine)
    with pytest.raises(ActivityDeadLetteredError) as info:
        await client.future("corrupt-1").get_result(timeout=10)
    assert info.value.reason == "corrupt"
    after = await client.execute_activity("t", "still running")
    assert await after.get_result(timeout=10) == "still running"
    [entry] = await client.dead_letters()
    assert entry.id == "corrupt-1"
    assert entry.record is None
    assert entry.raw  # the original text is kept for inspection


async def test_ready_id_without_record_is_dead_lettered(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, raw_redis: aioredis.Redis
) -> None:
    await raw_redis.zadd(QueueKeys(client.queue_name).ready, {"ghost": 0})
    engine = make_engine()
    await run_engine(engine)
    with pytest.raises(ActivityDeadLetteredError, match="record is missing"):
        await client.future("ghost").get_result(timeout=10)


async def test_handler_returning_non_json_is_dead_lettered(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine()

    @engine.activity("bad_result")
    async def bad_result(payload: Any, ctx: ActivityContext) -> Any:
        return {"when": object()}

    await run_engine(engine)
    future = await client.execute_activity("bad_result", None)
    with pytest.raises(ActivityDeadLetteredError) as info:
        await future.get_result(timeout=10)
    assert info.value.reason == "bad_result"


async def test_odd_exceptions_from_handlers(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    class Weird(BaseException):
        pass

    engine = make_engine(default_max_retries=0)

    @engine.activity("keyerror")
    async def keyerror(payload: Any, ctx: ActivityContext) -> Any:
        empty: dict[str, int] = {}
        return empty["missing"]

    @engine.activity("timeouterror")
    async def timeouterror(payload: Any, ctx: ActivityContext) -> Any:
        raise TimeoutError("upstream timed out")

    await run_engine(engine)
    f1 = await client.execute_activity("keyerror", None)
    f2 = await client.execute_activity("timeouterror", None)
    with pytest.raises(ActivityDeadLetteredError, match="KeyError: 'missing'"):
        await f1.get_result(timeout=10)
    with pytest.raises(ActivityDeadLetteredError) as info:
        await f2.get_result(timeout=10)
    # A TimeoutError the handler raised itself is a plain failure, not an activity timeout.
    assert info.value.reason == "retries_exhausted"


async def test_unknown_activity_id(client: ActivityClient) -> None:
    from runnerq import ActivityNotFoundError

    with pytest.raises(ActivityNotFoundError):
        await client.future("no-such-id").get_result(timeout=5)
