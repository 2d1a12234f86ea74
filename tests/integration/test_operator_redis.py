"""The operator's Redis side against a real redis-server: batched depth reads (one round
trip for many queues), the queue configuration the engine reads, lease holders, purge."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from runnerq_operator.redis_queues import (
    DepthQuery,
    RedisPools,
    lease_tokens,
    purge_queue,
    read_depths,
    write_queue_config,
)
from runnerq_operator.redis_target import RedisTarget, operator_target
from runnerq_operator.scaling import lease_holders
from runnerq_operator.spec import QueueConfigSpec, RedisSpec, SecretKeyRef

from runnerq import ActivityClient, ActivityOption, RedisUnavailableError
from runnerq.keys import QueueKeys
from runnerq.worker import new_worker_id
from tests.support.redis_server import RedisServer, free_port


@pytest.fixture
async def pools() -> AsyncIterator[RedisPools]:
    p = RedisPools()
    yield p
    await p.aclose()


async def fill(url: str, queue: str, ready: int, delayed: list[float], claim: int) -> Any:
    async with ActivityClient(url, queue) as c:
        await c.enqueue_many([("t", {"i": i}) for i in range(ready)])
        for delay in delayed:
            await c.execute_activity("t", None, ActivityOption(delay=delay))
        worker = new_worker_id()
        if claim:
            await c.store.claim(claim, 60.0, worker)
        return worker


async def test_depths_of_many_queues_in_one_round_trip(
    redis_url: str, queue_name: str, pools: RedisPools, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues = [f"{queue_name}-{i}" for i in range(3)]
    await fill(redis_url, queues[0], ready=10, delayed=[5.0, 3600.0], claim=4)
    await fill(redis_url, queues[1], ready=1, delayed=[], claim=0)
    client = pools.client(RedisTarget(redis_url))
    await client.zadd(QueueKeys(queues[1]).dlq, {"dead-1": 1, "dead-2": 2})
    await client.hset(QueueKeys(queues[1]).config, "paused", "1")
    await client.ping()  # connect first, so only the depth read is counted below

    sent = 0
    original = Connection.send_packed_command

    async def counting(self: Connection, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    depths = await read_depths(
        client,
        [DepthQuery(queues[0], scheduled_within=60), DepthQuery(queues[1]), DepthQuery(queues[2])],
        int(time.time() * 1000),
    )
    assert sent == 1

    first, second, third = depths
    assert (first.ready, first.in_flight, first.scheduled, first.due_soon) == (6, 4, 2, 1)
    assert not first.paused
    assert (second.ready, second.dead_letter, second.paused) == (1, 2, True)
    assert third.ready == third.in_flight == third.scheduled == 0


async def test_config_is_what_the_engine_reads(
    redis_url: str, queue_name: str, pools: RedisPools
) -> None:
    client = pools.client(RedisTarget(redis_url))
    await write_queue_config(
        client, queue_name, QueueConfigSpec(paused=True, max_retries=7, timeout=90.0)
    )
    async with ActivityClient(redis_url, queue_name) as c:
        assert await c.get_queue_config() == {"paused": "1", "max_retries": "7", "timeout": "90.0"}
        await c.execute_activity("t", None)
        assert await c.store.claim(1, 30.0, new_worker_id()) is None  # paused: no claims
        assert (await c.get_stats()).paused

        await write_queue_config(client, queue_name, QueueConfigSpec(paused=False))
        assert await c.get_queue_config() == {"paused": "0"}  # unset fields fall back
        claim = await c.store.claim(1, 30.0, new_worker_id())
        assert claim is not None and len(claim.items) == 1


async def test_lease_holders_name_the_claiming_host(
    redis_url: str, queue_name: str, pools: RedisPools
) -> None:
    worker = await fill(redis_url, queue_name, ready=5, delayed=[], claim=3)
    tokens = await lease_tokens(pools.client(RedisTarget(redis_url)), queue_name)
    host = worker.split(":")[0]
    assert lease_holders(tokens) == {host: 3}


async def test_purge_removes_only_that_queue(
    redis_url: str, queue_name: str, raw_redis: aioredis.Redis, pools: RedisPools
) -> None:
    other = queue_name + "-other"
    await fill(redis_url, queue_name, ready=3, delayed=[60.0], claim=1)
    await fill(redis_url, other, ready=2, delayed=[], claim=0)
    client = pools.client(RedisTarget(redis_url))

    deleted = await purge_queue(client, queue_name, batch=2)

    assert deleted >= 5
    assert await raw_redis.keys(QueueKeys(queue_name).base + "*") == []
    assert await raw_redis.zcard(QueueKeys(other).ready) == 2


async def test_unreachable_redis_fails_fast_with_a_readable_error(pools: RedisPools) -> None:
    client = pools.client(RedisTarget(f"redis://127.0.0.1:{free_port()}"))
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError, match="cannot read queue depths"):
        await read_depths(client, [DepthQuery("q")], 0)
    assert time.monotonic() - started < 10


async def test_password_protected_redis(queue_name: str, pools: RedisPools) -> None:
    with RedisServer(password="s3cret/with@chars") as server:
        spec = RedisSpec(
            url=f"redis://127.0.0.1:{server.port}", password_secret=SecretKeyRef("s", "p")
        )
        target = operator_target(spec, password="s3cret/with@chars")
        client = pools.client(target)
        await write_queue_config(client, queue_name, QueueConfigSpec(paused=True))
        (depth,) = await read_depths(client, [DepthQuery(queue_name)], 0)
        assert depth.paused
        await pools.aclose()


async def test_tls_and_password_for_operator_and_workers(pools: RedisPools) -> None:
    """A TLS Redis with a password: the operator's own connection (CA data and password read
    from Secrets) and the URL its workers get (CA mounted as a file, password from env)."""
    import asyncio

    from runnerq_operator.redis_target import CA_MOUNT_PATH, PASSWORD_ENV, worker_url

    from runnerq import ActivityContext, WorkerEngine

    with RedisServer(tls=True, password="tls-p@ss/word") as server:
        ca_file = server.dir / "ca.crt"
        spec = RedisSpec(
            url=f"redis://127.0.0.1:{server.port}",
            tls=True,
            password_secret=SecretKeyRef("redis", "password"),
            ca_secret=SecretKeyRef("redis-ca", "ca.crt"),
        )
        target = operator_target(spec, password="tls-p@ss/word", ca_data=ca_file.read_text())
        client = pools.client(target)
        await write_queue_config(client, "tls-q", QueueConfigSpec(max_retries=2))

        # What a worker pod would get: Kubernetes expands the password and mounts the CA.
        url = worker_url(spec)
        assert url is not None
        assert url.startswith("rediss://")
        url = url.replace(f"$({PASSWORD_ENV})", "tls-p%40ss%2Fword").replace(
            f"{CA_MOUNT_PATH}/ca.crt", str(ca_file)
        )
        engine = WorkerEngine(url, "tls-q")

        @engine.activity("t")
        async def t(payload: Any, ctx: ActivityContext) -> Any:
            return payload

        task = asyncio.create_task(engine.start(install_signal_handlers=False))
        try:
            future = await engine.get_activity_executor().execute_activity("t", "over tls")
            assert await future.get_result(timeout=10) == "over tls"
            [depth] = await read_depths(client, [DepthQuery("tls-q")], int(time.time() * 1000))
            assert (depth.ready, depth.in_flight) == (0, 0)
            assert await engine.get_activity_executor().get_queue_config() == {
                "paused": "0",
                "max_retries": "2",
            }
        finally:
            await engine.stop()
            await task
            await engine.aclose()
