"""Handlers and data that try to break the worker: each ends its activity with a clear
outcome and the worker keeps running (found by the chaos suite, tests/chaos)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityContext, ActivityDeadLetteredError, ActivityOption
from runnerq.keys import QueueKeys
from tests.conftest import EngineFactory


class Custom(BaseException):
    pass


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


RAISES: dict[str, BaseException] = {
    "system_exit": SystemExit(3),
    "keyboard_interrupt": KeyboardInterrupt(),
    "custom_base_exception": Custom("odd"),
    "cancelled_by_itself": asyncio.CancelledError(),
    "generator_exit": GeneratorExit(),
    "unprintable": Unprintable(),
}


@pytest.mark.parametrize("kind", list(RAISES))
async def test_any_raise_fails_the_activity_and_the_worker_goes_on(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, kind: str
) -> None:
    engine = make_engine()

    @engine.activity("raise")
    async def raise_it(payload: Any, ctx: ActivityContext) -> Any:
        raise RAISES[payload]

    @engine.activity("ok")
    async def ok(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    task = await run_engine(engine)
    future = await client.execute_activity("raise", kind, ActivityOption(max_retries=0))
    with pytest.raises(ActivityDeadLetteredError) as info:
        await future.get_result(timeout=10)
    assert info.value.reason == "retries_exhausted"
    assert await (await client.execute_activity("ok", "after")).get_result(timeout=10) == "after"
    assert not task.done()


@pytest.mark.parametrize("value", ["inf", "nan", "1e400", "-1", "2.5", "lots"])
async def test_bad_queue_config_values_fall_back_to_defaults(
    client: ActivityClient,
    make_engine: EngineFactory,
    run_engine: Any,
    raw_redis: aioredis.Redis,
    value: str,
) -> None:
    keys = QueueKeys(client.queue_name)
    await raw_redis.hset(keys.config, mapping={"max_retries": value, "timeout": value})
    engine = make_engine(default_max_retries=0)

    @engine.activity("fail")
    async def fail(payload: Any, ctx: ActivityContext) -> Any:
        raise RuntimeError("no")

    await run_engine(engine)
    with pytest.raises(ActivityDeadLetteredError):
        await (await client.execute_activity("fail", None)).get_result(timeout=10)


async def test_record_whose_id_differs_from_its_key_is_dead_lettered(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, raw_redis: aioredis.Redis
) -> None:
    keys = QueueKeys(client.queue_name)
    await raw_redis.hset(keys.jobs, "key-a", '{"id": "other-id", "type": "t", "payload": 1}')
    await raw_redis.zadd(keys.ready, {"key-a": 0})
    engine = make_engine()

    @engine.activity("t")
    async def t(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    await run_engine(engine)
    with pytest.raises(ActivityDeadLetteredError, match="does not match"):
        await client.future("key-a").get_result(timeout=10)
    assert (await client.get_stats()).running == 0


async def test_activity_that_keeps_losing_its_lease_is_dead_lettered(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any, raw_redis: aioredis.Redis
) -> None:
    """Poison that crashes or hangs every worker (so no retry is ever recorded) ends in the
    dead-letter queue after max_redeliveries lease expiries instead of cycling forever."""
    future = await client.execute_activity("poison", {"x": 1})
    store = client.store
    for _ in range(3):  # three workers took it and died: their leases expire and are reaped
        claim = await store.claim(1, 0.001, "doomed-worker")
        assert claim is not None
        assert [i for i, _ in claim.items] == [future.activity_id]
        await asyncio.sleep(0.01)
        assert await store.reap() == 1
    keys = QueueKeys(client.queue_name)
    assert await raw_redis.hget(keys.redeliveries, future.activity_id) == "3"
    ran = []
    engine = make_engine(max_redeliveries=3)

    @engine.activity("poison")
    async def poison(payload: Any, ctx: ActivityContext) -> Any:
        ran.append(payload)

    await run_engine(engine)
    with pytest.raises(ActivityDeadLetteredError) as info:
        await future.get_result(timeout=10)
    assert info.value.reason == "redelivered"
    assert "lease expired 3 times" in info.value.last_error
    assert ran == []
    assert await raw_redis.hlen(keys.redeliveries) == 0
    stats = await client.get_stats()
    assert (stats.redelivered, stats.dead_letter, stats.running) == (3, 1, 0)
