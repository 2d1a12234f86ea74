"""The operator's side of Redis: one connection pool per Redis server, every due queue's
depth in one pipelined round trip per server, the queue configuration hash, lease holders,
and purging a queue's keys.

Keys come from ``runnerq.keys.QueueKeys`` and the configuration is written by
``runnerq.store.QueueStore.set_config`` (which also wakes idle workers), so the operator and
the engine cannot disagree on names or encodings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import redis.asyncio as aioredis

from runnerq.config import QueueSettings, RedisConfig
from runnerq.connection import connect, translate_errors
from runnerq.errors import ConfigurationError
from runnerq.keys import QueueKeys
from runnerq.limits import Limits, LimitStats
from runnerq.scripts import Scripts
from runnerq.store import QueueStore

from .redis_target import RedisTarget
from .scaling import Depth
from .spec import QueueConfigSpec

__all__ = [
    "COMMANDS_PER_QUEUE",
    "DepthQuery",
    "RedisPools",
    "lease_tokens",
    "limits_json",
    "purge_queue",
    "read_depths",
    "with_limits",
    "write_queue_config",
]

#: Small pools with short timeouts: an unreachable Redis must fail a poll fast.
OPERATOR_REDIS_CONFIG = RedisConfig(
    max_size=4, min_idle=0, conn_timeout=3.0, idle_timeout=300.0, max_lifetime=3600.0
)
COMMANDS_PER_QUEUE = 9


@dataclass(frozen=True, slots=True)
class DepthQuery:
    queue: str
    #: Count scheduled activities due within this many seconds as "due soon".
    scheduled_within: float = 0.0


class RedisPools:
    """One client (pool) per Redis target, shared by every queue on that server."""

    def __init__(self, config: RedisConfig = OPERATOR_REDIS_CONFIG) -> None:
        self._config = config
        self._clients: dict[RedisTarget, aioredis.Redis] = {}

    def client(self, target: RedisTarget) -> aioredis.Redis:
        client = self._clients.get(target)
        if client is None:
            client = connect(target.url, self._config, **target.connect_kwargs())
            self._clients[target] = client
        return client

    async def discard(self, keep: set[RedisTarget]) -> None:
        """Close the pools of targets no queue uses any more."""
        for target in [t for t in self._clients if t not in keep]:
            await self._clients.pop(target).aclose()

    async def aclose(self) -> None:
        await self.discard(set())


async def read_depths(
    client: aioredis.Redis, queries: Sequence[DepthQuery], now_ms: int
) -> list[Depth]:
    """Depth of every queue in ``queries``: one round trip whatever their number.

    ``now_ms`` is the operator's clock; due times are Redis's, so a skew between the two
    shifts the "due soon" window by that much, and the rate's tokens (refilled on Redis's
    clock by the claim) by that much at most, never past the burst.
    """
    with translate_errors("cannot read queue depths"):
        async with client.pipeline(transaction=False) as pipe:
            for q in queries:
                k = QueueKeys(q.queue)
                horizon = now_ms + math.ceil(q.scheduled_within * 1000)
                pipe.zcard(k.ready)
                pipe.zcard(k.kready)  # activities with a limit key wait there
                pipe.zcard(k.inflight)
                pipe.zcard(k.scheduled)
                pipe.zcount(k.scheduled, "-inf", horizon)
                pipe.zcard(k.dlq)
                pipe.hmget(k.config, ["paused", "limits"])
                pipe.hget(k.limit_state, "b:q")
                pipe.zcount(k.kholds, f"({now_ms}", "+inf")  # keys whose hold has not ended
            raw = await pipe.execute()
    depths = []
    for i in range(len(queries)):
        ready, keyed, in_flight, scheduled, due, dead, (paused, limits), bucket, held = raw[
            i * COMMANDS_PER_QUEUE : (i + 1) * COMMANDS_PER_QUEUE
        ]
        depth = Depth(
            ready=int(ready) + int(keyed),
            in_flight=int(in_flight),
            scheduled=int(scheduled),
            due_soon=int(due),
            dead_letter=int(dead),
            paused=paused in ("1", "true"),
            held_keys=int(held),
        )
        depths.append(with_limits(depth, limits, bucket, now_ms))
    return depths


def with_limits(depth: Depth, limits_json: str | None, bucket: str | None, now_ms: int) -> Depth:
    """``depth`` with what the queue's own limits let start now (``Depth.eligible``) and its
    concurrency limit; unchanged when it has neither. Limits that cannot be read are none,
    as the claim script takes them."""
    if limits_json is None:
        return depth
    try:
        limits = Limits.from_json(str(limits_json))
    except ConfigurationError:
        return depth
    if limits.rate is None and limits.concurrency is None:
        return depth
    state = {} if bucket is None else {"b:q": str(bucket)}
    stats = LimitStats.read(state, limits, depth.ready, depth.in_flight, now_ms)
    return replace(depth, eligible=stats.eligible, max_running=limits.concurrency)


async def write_queue_config(client: aioredis.Redis, queue: str, config: QueueConfigSpec) -> None:
    """Write the queue's configuration hash (absent values fall back to the workers'
    defaults) and wake idle workers so that they see it at once."""
    store = QueueStore(client, QueueSettings(name=queue), Scripts(client))
    with translate_errors(f"cannot write the configuration of queue {queue}"):
        await store.set_config(
            {
                "paused": config.paused,
                "max_retries": config.max_retries,
                "timeout": config.timeout,
                "limits": limits_json(config.limits),
            }
        )


def limits_json(limits: Limits | None) -> str | None:
    """The ``limits`` field for ``limits`` (None: removed; the ActivityQueue owns it)."""
    return None if limits is None or limits.empty else limits.to_json()


async def lease_tokens(client: aioredis.Redis, queue: str) -> list[str]:
    """The lease tokens of the queue's in-flight activities (``<host>:<pid>:<id>:<seq>``)."""
    with translate_errors(f"cannot read the leases of queue {queue}"):
        values = await client.hvals(QueueKeys(queue).leases)
    return [str(v) for v in values]


async def purge_queue(client: aioredis.Redis, queue: str, batch: int = 500) -> int:
    """Delete every key of the queue; returns how many went."""
    pattern = QueueKeys(queue).base + "*"
    deleted = 0
    with translate_errors(f"cannot purge queue {queue}"):
        keys: list[str] = []
        async for key in client.scan_iter(match=pattern, count=batch):
            keys.append(key)
            if len(keys) >= batch:
                deleted += int(await client.unlink(*keys))
                keys.clear()
        if keys:
            deleted += int(await client.unlink(*keys))
    return deleted
