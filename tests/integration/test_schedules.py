"""Schedules against a real redis-server: exactly once per tick whoever fires, catch-up,
overlap policies, suspend and resume, run now, owners, and bad input."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityContext, ConfigurationError, InMemoryMetrics
from runnerq.keys import QueueKeys
from runnerq.metrics import SCHEDULE_FIRED, SCHEDULE_MISSED
from runnerq.schedule import Schedule
from runnerq.schedules import (
    ScheduleConflictError,
    ScheduleFirer,
    definition_version,
    schedule_activity_id,
)
from tests.conftest import EngineFactory
from tests.support.polling import eventually


async def _value(value: Any) -> Any:
    return value


def test_five_firing_processes_run_each_tick_once(redis_url: str, queue_name: str) -> None:
    """Five worker processes fire an every-second schedule for about 10 s: the ticks run are
    unique and gapless, each ran once, about ten of them."""
    env = dict(os.environ, RUNNERQ_REDIS_URL=redis_url, RUNNERQ_QUEUE=queue_name)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "runnerq", "worker", "tests.apps.schedule_app:engine"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(5)
    ]
    try:
        time.sleep(10)
    finally:
        for proc in procs:
            proc.terminate()  # once, as Kubernetes does
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert [p.returncode for p in procs] == [0] * 5
    runs = asyncio.run(_ran(redis_url, queue_name))
    ticks = [float(tick) for tick, _, _ in runs]
    ids = [activity_id for _, activity_id, _ in runs]
    assert len(set(ids)) == len(ids), "an activity ran twice"
    assert len(set(ticks)) == len(ticks), "a tick ran twice"
    whole = sorted(int(t) for t in ticks)
    assert whole == list(range(whole[0], whole[0] + len(whole))), "a tick was skipped"
    assert 8 <= len(whole) <= 11  # 10 s, less the processes' start-up, +-1 at the edges
    assert len({pid for _, _, pid in runs}) >= 1


async def _ran(redis_url: str, queue: str) -> list[tuple[str, str, str]]:
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        lines = await raw.lrange(f"ran:{queue}", 0, -1)
        info = await raw.hgetall(QueueKeys(queue).schedule_state("heartbeat"))
        assert int(info["fired"]) == len(lines)
        runs = [str(line).split(" ") for line in lines]
        return [(tick, activity_id, pid) for tick, activity_id, pid in runs]
    finally:
        await raw.aclose()


async def _stored_next(raw: aioredis.Redis, queue: str, name: str) -> float:
    score = await raw.zscore(QueueKeys(queue).schedule_next, name)
    assert score is not None
    return float(score) / 1000.0


async def _backdate(raw: aioredis.Redis, queue: str, name: str, seconds_ago: float) -> None:
    """Make the schedule's stored next tick lie ``seconds_ago`` in the past (on a tick)."""
    now = await raw.time()
    now_s = int(now[0])
    tick_ms = (now_s - int(seconds_ago)) // 60 * 60 * 1000
    await raw.zadd(QueueKeys(queue).schedule_next, {name: tick_ms})


@pytest.mark.parametrize(
    ("catch_up", "limit", "deadline", "runs"),
    [("skip", 10, None, 0), ("latest", 10, None, 1), ("all", 5, None, 5), ("all", 100, 600, 10)],
)
async def test_catch_up_after_an_hour_with_nothing_firing(
    client: ActivityClient,
    raw_redis: aioredis.Redis,
    catch_up: Any,
    limit: int,
    deadline: float | None,
    runs: int,
) -> None:
    schedule = Schedule(
        "minutely",
        "t",
        every=60,
        catch_up=catch_up,
        catch_up_limit=limit,
        starting_deadline=deadline,
    )
    await client.schedules.upsert(schedule)
    await _backdate(raw_redis, client.queue_name, "minutely", 3600)
    now = await client.schedules.redis_time()
    if not 3 < now % 60 < 55:  # keep clear of an on-time tick (ON_TIME is 2 s)
        await asyncio.sleep((63.5 - now % 60) % 60)
        now = await client.schedules.redis_time()
    firer = ScheduleFirer(client.store)
    await firer.fire_due()
    stats = await client.get_stats()
    info = await client.schedules.get("minutely")
    assert info is not None
    assert stats.pending == runs
    assert info.state.fired == runs
    assert info.state.fired + info.state.missed >= 60  # every tick of the hour is accounted for
    assert info.state.next_tick is not None and info.state.next_tick > now
    # Fired again at once: nothing more (the tick moved on).
    await firer.fire_due()
    assert (await client.get_stats()).pending == runs


async def test_missed_ticks_of_many_schedules_are_one_log_line(
    client: ActivityClient, raw_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that starts after every firer was down finds many schedules behind: one
    warning per firing names them (the first ten) and the count, not one line each."""
    names = [f"s{i:02}" for i in range(25)]
    await asyncio.gather(*(client.schedules.upsert(Schedule(n, "t", every=60)) for n in names))
    for n in names:
        await _backdate(raw_redis, client.queue_name, n, 600)
    now = await client.schedules.redis_time()
    if not 3 < now % 60 < 55:  # keep clear of an on-time tick (ON_TIME is 2 s)
        await asyncio.sleep((63.5 - now % 60) % 60)
    with caplog.at_level(logging.INFO, logger="runnerq"):
        await ScheduleFirer(client.store).fire_due()
    lines = [r.getMessage() for r in caplog.records if "missed" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"queue {client.queue_name}: " in lines[0] and "and 15 more schedule(s)" in lines[0]
    infos = await client.schedules.list()
    total = sum(info.state.missed for info in infos)
    assert len(infos) == 25 and total >= 25 * 10
    assert f": {total} tick(s) missed" in lines[0]


async def test_ticks_are_counted_per_schedule_as_well(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    store = client.schedules
    await store.upsert(Schedule("a", "t", every=60, catch_up="latest"))
    await store.upsert(Schedule("b", "t", every=60))
    for name in "ab":
        await _backdate(raw_redis, client.queue_name, name, 600)
    now = await store.redis_time()
    if not 3 < now % 60 < 55:  # keep clear of an on-time tick (ON_TIME is 2 s)
        await asyncio.sleep((63.5 - now % 60) % 60)
    metrics = InMemoryMetrics()
    await ScheduleFirer(client.store, metrics).fire_due()
    state = {info.name: info.state for info in await store.list()}
    by_schedule = dict(metrics.schedule_counters)
    assert by_schedule[SCHEDULE_FIRED, "a"] == 1 and (SCHEDULE_FIRED, "b") not in by_schedule
    assert by_schedule[SCHEDULE_MISSED, "a"] == state["a"].missed >= 9
    assert by_schedule[SCHEDULE_MISSED, "b"] == state["b"].missed >= 10
    assert metrics.counters[SCHEDULE_MISSED] == state["a"].missed + state["b"].missed


async def test_a_retried_or_concurrent_firing_adds_nothing(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    await client.schedules.upsert(Schedule("s", "t", every=60, catch_up="latest"))
    await _backdate(raw_redis, client.queue_name, "s", 1)  # one tick due, on time or not
    firers = [ScheduleFirer(client.store) for _ in range(5)]
    await asyncio.gather(*(f.fire_due() for f in firers))
    await asyncio.gather(*(f.fire_due() for f in firers))
    assert (await client.get_stats()).pending == 1


async def test_forbid_skips_ticks_while_the_previous_run_is_not_done(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine()
    running: list[str] = []
    overlaps = 0
    release = asyncio.Event()

    @engine.activity("slow")
    async def slow(payload: Any, ctx: ActivityContext) -> None:
        nonlocal overlaps
        overlaps += bool(running)
        running.append(ctx.activity_id)
        try:
            await release.wait()
        finally:
            running.remove(ctx.activity_id)

    engine.schedule("slow", "slow", every=1, concurrency="forbid")
    await run_engine(engine)
    await eventually(lambda: _value(running), what="the first run")
    await eventually(lambda: _skipped(client, "slow", 2), what="ticks skipped", timeout=15)
    assert overlaps == 0 and len(running) == 1
    release.set()
    await engine.stop()


async def _skipped(client: ActivityClient, name: str, at_least: int) -> bool:
    info = await client.schedules.get(name)
    return info is not None and info.state.skipped >= at_least


async def test_replace_cancels_the_previous_run(
    client: ActivityClient, make_engine: EngineFactory, run_engine: Any
) -> None:
    engine = make_engine()
    started: list[str] = []
    cancelled: list[str] = []

    @engine.activity("slow")
    async def slow(payload: Any, ctx: ActivityContext) -> None:
        started.append(ctx.activity_id)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(ctx.activity_id)
            raise

    engine.schedule("slow", "slow", every=1, concurrency="replace")
    await run_engine(engine)
    await eventually(lambda: _value(len(started) >= 3), what="three runs", timeout=15)
    await eventually(lambda: _value(len(cancelled) >= 2), what="two replaced")
    assert set(cancelled) < set(started)
    stats = await client.get_stats()
    assert stats.running <= 1


async def test_suspend_resume_and_trigger_now(client: ActivityClient) -> None:
    store = client.schedules
    await store.upsert(Schedule("daily", "t", cron="0 3 * * *", payload={"n": 1}))
    assert await store.suspend("daily")
    info = await store.get("daily")
    assert info is not None and info.suspended and info.state.next_tick is None
    activity_id = await store.trigger("daily")  # runs now even while suspended
    future = client.future(activity_id)
    stats = await client.get_stats()
    assert stats.pending == 1
    assert await store.resume("daily")
    info = await store.get("daily")
    assert info is not None and not info.suspended and info.state.next_tick is not None
    assert info.state.fired == 1 and info.state.last_activity_id == future.activity_id
    assert not await store.suspend("nope")
    with pytest.raises(ConfigurationError, match="no schedule named"):
        await store.trigger("nope")


async def test_owners_are_not_overwritten(client: ActivityClient) -> None:
    store = client.schedules
    await store.upsert(Schedule("mine", "t", every=5, owner="operator"))
    with pytest.raises(ScheduleConflictError, match="belongs to 'operator'"):
        await store.upsert(Schedule("mine", "t", every=10, owner="code"))
    with pytest.raises(ScheduleConflictError):
        await store.remove("mine", owner="code")
    info = await store.get("mine")
    assert info is not None and info.schedule is not None and info.schedule.every == 5
    assert await store.upsert(Schedule("mine", "t", every=10, owner="code"), take_over=True)
    assert await store.remove("mine", owner="code")
    assert await store.get("mine") is None


async def test_an_unchanged_declaration_keeps_its_progress(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    store = client.schedules
    schedule = Schedule("s", "t", every=60)
    assert await store.upsert(schedule)
    await store.suspend("s")
    assert not await store.upsert(schedule)  # a worker starting again: nothing changes
    info = await store.get("s")
    assert info is not None and info.suspended
    assert await store.upsert(schedule.replace(payload={"changed": True}))
    info = await store.get("s")
    assert info is not None and not info.suspended  # a new definition starts afresh


async def test_an_unreadable_stored_schedule_is_logged_and_left_alone(
    client: ActivityClient, raw_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = client.schedules
    await store.upsert(Schedule("good", "t", every=60, catch_up="latest"))
    await store.upsert(Schedule("bad", "t", every=60))
    keys = QueueKeys(client.queue_name)
    await raw_redis.hset(keys.schedules, "bad", '{"name": "bad", "cron": "nope"')
    await _backdate(raw_redis, client.queue_name, "good", 1)
    await _backdate(raw_redis, client.queue_name, "bad", 1)
    firer = ScheduleFirer(client.store)
    await firer.fire_due()
    assert "schedule bad on queue" in caplog.text and "cannot be read" in caplog.text
    assert (await client.get_stats()).pending == 1  # the good one fired
    assert await _stored_next(raw_redis, client.queue_name, "bad") > time.time() + 30
    [bad, good] = await store.list()
    assert bad.schedule is None and bad.error and "not JSON" in bad.error
    assert good.schedule is not None


async def test_progress_without_a_version_is_logged_and_moved_on(
    client: ActivityClient, raw_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Progress not written by runnerq (no version: the ids of its ticks cannot be made) is
    not fired, said once, and moved a minute on; the rest of the batch fires."""
    store = client.schedules
    await store.upsert(Schedule("good", "t", every=60, catch_up="latest"))
    await store.upsert(Schedule("odd", "t", every=60, catch_up="latest"))
    keys = QueueKeys(client.queue_name)
    await raw_redis.hdel(keys.schedule_state("odd"), "version")
    await _backdate(raw_redis, client.queue_name, "good", 1)
    await _backdate(raw_redis, client.queue_name, "odd", 1)
    firer = ScheduleFirer(client.store)
    wait = await firer.fire_due()  # the version made from its definition: refused
    if wait == 0.0:
        wait = await firer.fire_due()  # read: none
    assert wait is not None and wait > 0
    assert "schedule odd on queue" in caplog.text and "no version" in caplog.text
    assert (await client.get_stats()).pending == 1  # the good one fired
    assert await _stored_next(raw_redis, client.queue_name, "odd") > time.time() + 30


async def test_a_version_written_by_an_older_runnerq_is_read_and_used(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    """A firer makes a schedule's version from its definition; one stored otherwise (older
    runnerq wrote random ones) is refused by the script, read, and fired with at once."""
    store = client.schedules
    schedule = Schedule("s", "t", every=60, catch_up="latest")
    await store.upsert(schedule)
    keys = QueueKeys(client.queue_name)
    assert await raw_redis.hget(keys.schedule_state("s"), "version") == definition_version(
        schedule.to_json()
    )
    await raw_redis.hset(keys.schedule_state("s"), "version", "0123456789abcdef")
    await _backdate(raw_redis, client.queue_name, "s", 1)
    firer = ScheduleFirer(client.store)
    assert await firer.fire_due() == 0.0  # refused: read, and at once again
    await firer.fire_due()
    info = await store.get("s")
    assert info is not None and info.state.fired == 1 and info.state.last_tick is not None
    tick_ms = round(info.state.last_tick * 1000)
    expected = schedule_activity_id(client.queue_name, "s", "0123456789abcdef", tick_ms)
    assert info.state.last_activity_id == expected
    assert (await client.get_stats()).pending == 1
    await store.remove("s")
    await store.upsert(schedule)  # the same definition again: the same version
    info = await store.get("s")
    assert info is not None and info.state.version == definition_version(schedule.to_json())


async def test_one_firing_call_answers_each_schedule_on_its_own(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    """The script fires a batch: a schedule someone else fired, one not due by Redis's
    clock and one whose version changed do nothing; the others fire."""
    from runnerq.schedule import Plan

    store = client.schedules
    names = ["a", "b", "c", "d"]
    for n in names:
        await store.upsert(Schedule(n, "t", every=60))
    keys = QueueKeys(client.queue_name)
    stored = {n: int(await raw_redis.zscore(keys.schedule_next, n) or 0) for n in names}
    version = {n: str(await raw_redis.hget(keys.schedule_state(n), "version")) for n in names}
    now = await store.redis_time()
    due, later = Plan((now - 1,), 0, now + 60), Plan((now + 30,), 0, now + 60)
    blocks = [
        store.fire_block(Schedule(n, "t", every=60), version[n], stored[n], due) for n in "ab"
    ]
    blocks[1].args[1] = stored["b"] - 60_000  # read before someone fired it
    blocks.append(store.fire_block(Schedule("c", "t", every=60), version["c"], stored["c"], later))
    blocks.append(store.fire_block(Schedule("d", "t", every=60), "stale", stored["d"], due))
    call = store.fire_call(blocks)
    replies = await call.script(keys=call.keys, args=call.args)
    assert [int(r[0]) for r in replies] == [1, 0, -1, -2]
    assert [int(x) for x in replies[0]] == [1, 1, 0]
    assert (await client.get_stats()).pending == 1
    assert int(await raw_redis.zscore(keys.schedule_next, "a") or 0) == round((now + 60) * 1000)
    for n in ("b", "c", "d"):
        assert int(await raw_redis.zscore(keys.schedule_next, n) or 0) == stored[n]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "0 3 * * *", "timezone": "Europe/Atlantis"}, "unknown time zone"),
        ({"every": 60, "payload": {"when": {1, 2}}}, "not JSON"),
    ],
    ids=["cron", "zone", "payload"],
)
async def test_bad_input_writes_nothing(
    client: ActivityClient, raw_redis: aioredis.Redis, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await client.schedules.upsert(Schedule("s", "t", **kwargs))
    assert await raw_redis.keys(f"runnerq:{{{client.queue_name}}}:*") == []


async def test_run_now_is_not_held_back_by_forbid(client: ActivityClient) -> None:
    """Asked for by hand: the previous run still pending does not stop it (it did: the id
    came back, but nothing was enqueued)."""
    store = client.schedules
    await store.upsert(Schedule("s", "t", cron="0 3 * * *", concurrency="forbid"))
    first = await store.trigger("s")
    second = await store.trigger("s")
    assert first != second
    assert (await client.get_stats()).pending == 2
    info = await store.get("s")
    assert info is not None and (info.state.fired, info.state.skipped) == (2, 0)


async def test_runs_now_in_the_same_millisecond_are_each_enqueued(
    client: ActivityClient,
) -> None:
    """A run by hand has an id of its own: two in the same millisecond of Redis's clock got
    the same id (derived from the millisecond) and the second enqueued nothing (a CI run)."""
    store = client.schedules
    await store.upsert(Schedule("s", "t", cron="0 3 * * *"))
    ids = await asyncio.gather(*(store.trigger("s") for _ in range(20)))
    assert len(set(ids)) == 20
    assert (await client.get_stats()).pending == 20
    info = await store.get("s")
    assert info is not None and info.state.fired == 20


async def test_suspend_and_resume_can_require_the_owner(client: ActivityClient) -> None:
    store = client.schedules
    await store.upsert(Schedule("op", "t", every=60, owner="operator"))
    with pytest.raises(ScheduleConflictError):
        await store.suspend("op", owner="api")
    info = await store.get("op")
    assert info is not None and not info.suspended
    assert await store.suspend("op", owner="operator")
    assert await store.resume("op")
