"""Limits across worker processes (docs/limits.md): global concurrency, a global rate, a
worker killed while it holds slots, limits changed while workers run. The handlers of
``tests.apps.limits_app`` count, in Redis, what runs at once and when each activity starts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis

from runnerq import ActivityClient, ActivityOption, Limits, Rate
from runnerq.keys import QueueKeys
from tests.support.polling import eventually
from tests.support.processes import terminate


@contextmanager
def workers(
    redis_url: str, queue: str, n: int, **env: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    environ = dict(os.environ, RUNNERQ_REDIS_URL=redis_url, RUNNERQ_QUEUE=queue, **env)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "runnerq", "worker", "tests.apps.limits_app:engine"],
                    env=environ,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield procs
    finally:
        for proc in procs:
            terminate(proc)


async def _until(
    read: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], timeout: float
) -> None:
    async def probe() -> bool:
        return check(await read())

    await eventually(probe, timeout)


async def _int(raw: aioredis.Redis, key: str) -> int:
    return int(str(await raw.get(key) or 0))


async def _done(raw: aioredis.Redis, queue: str) -> list[str]:
    return [str(x) for x in await raw.lrange(f"done:{queue}", 0, -1)]


async def _starts(raw: aioredis.Redis, queue: str) -> list[tuple[int, str]]:
    out = []
    for entry in await raw.lrange(f"starts:{queue}", 0, -1):
        ms, activity_id = str(entry).split()
        out.append((int(ms), activity_id))
    return out


async def _wait_done(raw: aioredis.Redis, queue: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await raw.llen(f"done:{queue}") < n:
        assert time.monotonic() < deadline, f"{await raw.llen(f'done:{queue}')} of {n} done"
        await asyncio.sleep(0.1)


async def test_global_concurrency_holds_over_three_worker_processes(
    client: ActivityClient, raw_redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    await client.set_limits(Limits(concurrency=5))
    futures = await client.enqueue_many([("work", 0.005)] * 2000)
    with workers(redis_url, queue_name, 3, LIMITS_WORKERS="10"):
        await _wait_done(raw_redis, queue_name, 2000, timeout=180)
    done = await _done(raw_redis, queue_name)
    assert sorted(done) == sorted(f.activity_id for f in futures)  # all, each once
    assert await _int(raw_redis, f"max:{queue_name}") == 5  # never above 5 (and used)
    keys = QueueKeys(queue_name)
    assert await raw_redis.hlen(keys.limited) == 0  # every slot given back
    assert await raw_redis.hget(keys.limit_state, "c:work") is None


async def test_a_global_rate_holds_over_three_worker_processes(
    client: ActivityClient, raw_redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    """Rate 50/s with a burst of 10 for about 10 s: no one-second window holds more than 60
    starts (burst + rate), and the rate after the burst is within 10% of 50/s."""
    await client.set_limits(Limits(rate=Rate(50, 1.0, burst=10)))
    n = 510
    await client.enqueue_many([("work", 0)] * n)
    with workers(redis_url, queue_name, 3, LIMITS_WORKERS="10"):
        await _wait_done(raw_redis, queue_name, n, timeout=60)
    times = sorted(ms for ms, _ in await _starts(raw_redis, queue_name))
    assert len(times) == n
    most = 0
    j = 0
    for i, start in enumerate(times):
        while times[j] <= start - 1000:
            j += 1
        most = max(most, i - j + 1)
    assert most <= 60
    rate = (n - 10) / ((times[-1] - times[0]) / 1000)
    assert 45 <= rate <= 55, rate


async def test_a_killed_workers_slots_come_back_when_its_leases_expire(
    client: ActivityClient, raw_redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    await client.set_limits(Limits(concurrency=4))
    futures = await client.enqueue_many([("work", 0.5)] * 20)
    env = {"LIMITS_WORKERS": "10", "LIMITS_LEASE": "2"}
    with workers(redis_url, queue_name, 1, **env) as (first,):
        await _until(lambda: raw_redis.get(f"live:{queue_name}"), lambda v: v == "4", 30)
        first.send_signal(signal.SIGKILL)
        first.wait()
    seconds, micros = await raw_redis.time()
    killed_at = int(seconds) * 1000 + int(micros) // 1000
    killed = {activity_id for _, activity_id in await _starts(raw_redis, queue_name)}
    killed -= set(await _done(raw_redis, queue_name))
    await raw_redis.set(f"live:{queue_name}", 0)  # the killed handlers never counted down
    await raw_redis.set(f"max:{queue_name}", 0)
    with workers(redis_url, queue_name, 1, **env):
        await _wait_done(raw_redis, queue_name, 20, timeout=60)
    done = await _done(raw_redis, queue_name)
    assert sorted(done) == sorted(f.activity_id for f in futures)  # nothing lost, none twice
    starts = await _starts(raw_redis, queue_name)
    again = [(ms, i) for ms, i in starts if i in killed]
    assert len(killed) == 4 and len(again) == 8  # the four held ran again, once each
    later = [ms for ms, _ in starts if ms >= killed_at]
    # No slot until the dead worker's leases expired (heartbeats kept them up to 2 s).
    assert min(later) >= killed_at + 1000
    assert await _int(raw_redis, f"max:{queue_name}") <= 4
    keys = QueueKeys(queue_name)
    assert await raw_redis.hlen(keys.limited) == 0
    assert await raw_redis.hget(keys.limit_state, "c:work") is None


async def test_limits_changed_while_workers_run_take_effect_at_the_next_claim(
    client: ActivityClient, raw_redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    await client.set_limits(Limits(concurrency=1))
    await client.enqueue_many([("work", 0.2)] * 60)
    live = f"live:{queue_name}"
    with workers(redis_url, queue_name, 2, LIMITS_WORKERS="10"):
        await _until(lambda: raw_redis.llen(f"done:{queue_name}"), lambda v: v >= 3, 30)
        assert await raw_redis.get(f"max:{queue_name}") == "1"
        await client.set_limits(Limits(concurrency=6))
        changed = time.monotonic()
        await _until(lambda: raw_redis.get(live), lambda v: v == "6", 5)
        assert time.monotonic() - changed < 1.0
        await client.set_limits(Limits(concurrency=2))
        await asyncio.sleep(0.5)  # those running end (0.2 s); no new ones above 2
        for _ in range(10):
            assert await _int(raw_redis, live) <= 2
            await asyncio.sleep(0.05)
        await client.set_limits(None)
        await _wait_done(raw_redis, queue_name, 60, timeout=60)


async def test_a_key_that_floods_does_not_delay_another_keys_ten(
    client: ActivityClient, raw_redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    """Key A floods 5,000 activities; key B's ten, enqueued afterwards, all start within a
    second while A is still draining (fair queuing between keys: no limits needed)."""
    flood = ActivityOption(limit_key="A")
    await client.enqueue_many([("work", 0.05, flood)] * 5000)
    with workers(redis_url, queue_name, 2, LIMITS_WORKERS="10"):
        await _until(lambda: raw_redis.llen(f"done:{queue_name}"), lambda n: n >= 100, 30)
        seconds, micros = await raw_redis.time()
        enqueued_at = int(seconds) * 1000 + int(micros) // 1000
        ten = ActivityOption(limit_key="B")
        futures = await client.enqueue_many([("work", 0, ten)] * 10)
        for future in futures:
            await future.get_result(timeout=10)
        assert await raw_redis.llen(f"done:{queue_name}") < 4000  # A is still draining
    b_ids = {f.activity_id for f in futures}
    starts = {i: ms for ms, i in await _starts(raw_redis, queue_name) if i in b_ids}
    assert len(starts) == 10
    assert max(starts.values()) - enqueued_at < 1000, sorted(starts.values())
