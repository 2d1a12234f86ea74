"""Delayed and timed activities, blocking wake-ups, and idempotency keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from runnerq import ActivityClient, ActivityContext, ActivityOption
from tests.conftest import EngineFactory


async def test_delayed_activity_runs_after_due_time_without_a_poll_tick(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    # A poll interval far longer than the test: only the scheduler's own timer can start it.
    engine = make_engine(schedule_poll_interval=120)
    started: dict[str, float] = {}

    @engine.activity("remind")
    async def remind(payload: Any, ctx: ActivityContext) -> Any:
        started[ctx.activity_id] = time.time()

    await run_engine(engine)
    enqueued = time.time()
    future = await client.execute_activity("remind", None, ActivityOption(delay=0.3))
    assert (await client.get_stats()).scheduled == 1
    await future.get_result(timeout=20)
    assert started[future.activity_id] >= enqueued + 0.3 - 0.005


async def test_run_at_datetime(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine(schedule_poll_interval=120)
    ran_at: list[float] = []

    @engine.activity("at")
    async def at(payload: Any, ctx: ActivityContext) -> Any:
        ran_at.append(time.time())

    await run_engine(engine)
    when = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=300)
    future = await client.activity("at").run_at(when).execute()
    await future.get_result(timeout=20)
    assert ran_at[0] >= when.timestamp() - 0.005


async def test_scheduled_earlier_than_current_timer_is_not_delayed(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    """The scheduler sleeps until the next due time, and wakes when an earlier one arrives."""
    engine = make_engine(schedule_poll_interval=120)

    @engine.activity("noop")
    async def noop(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    await run_engine(engine)
    await client.execute_activity("noop", "far", ActivityOption(delay=100))
    await asyncio.sleep(0.05)  # let the scheduler go to sleep on the far timer
    near = await client.execute_activity("noop", "near", ActivityOption(delay=0.2))
    assert await near.get_result(timeout=20) == "near"


async def test_idle_engine_wakes_on_enqueue(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine(schedule_poll_interval=120)

    @engine.activity("echo")
    async def echo(payload: Any, ctx: ActivityContext) -> Any:
        return payload

    await run_engine(engine)
    await asyncio.sleep(0.1)  # the engine is idle, blocked waiting for work
    for i in range(3):
        future = await client.execute_activity("echo", i)
        assert await future.get_result(timeout=20) == i


async def test_idempotency_key_returns_first_activity(client: ActivityClient) -> None:
    first = await client.activity("charge").payload({"n": 1}).idempotency_key("order-7").execute()
    second = await client.activity("charge").payload({"n": 2}).idempotency_key("order-7").execute()
    other = await client.activity("charge").payload({"n": 3}).idempotency_key("order-8").execute()
    assert first.created
    assert not second.created
    assert second.activity_id == first.activity_id
    assert other.activity_id != first.activity_id
    stats = await client.get_stats()
    assert (stats.pending, stats.enqueued) == (2, 2)


async def test_idempotency_key_concurrent_enqueues(client: ActivityClient) -> None:
    futures = await asyncio.gather(
        *(client.activity("charge").payload(i).idempotency_key("same").execute() for i in range(20))
    )
    assert len({f.activity_id for f in futures}) == 1
    assert sum(f.created for f in futures) == 1


async def test_what_is_due_now_is_ready_at_once(client: ActivityClient) -> None:
    """No delay, a delay of 0 and a run_at already past go straight to the ready set (with
    no scheduler round trip); a delay or a run_at ahead goes to the scheduled set."""
    now = dt.datetime.now(dt.UTC)
    ready = [
        ActivityOption(),
        ActivityOption(delay=0),
        ActivityOption(run_at=now - dt.timedelta(seconds=5)),
    ]
    later = [ActivityOption(delay=30), ActivityOption(run_at=now + dt.timedelta(seconds=30))]
    for options in ready + later:
        await client.execute_activity("t", None, options)
    stats = await client.get_stats()
    assert (stats.pending, stats.scheduled) == (3, 2)
    # The same in one call, as groups of their own.
    await client.enqueue_many([("t", i, options) for i, options in enumerate(ready + later)])
    stats = await client.get_stats()
    assert (stats.pending, stats.scheduled) == (6, 4)
