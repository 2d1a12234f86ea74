"""A bare-bones at-least-once queue: the "ceiling" row of the benchmarks.

It does the least a Redis queue with leases and results can do, so that runnerq's figures can
be read against what one Python process and one Redis allow on the same machine:

* payloads in one hash, a ready ZSET scored by due time (ms) (delayed activities are the same
  ZSET with a later score), an in-flight ZSET scored by lease deadline, results as strings with
  a TTL, a completed counter;
* enqueue: one script call per batch of activities; concurrent single enqueues are coalesced
  into one pipeline (consecutive ones with the same delay share a script call);
* claim: one script call leases up to 50 ready activities and returns their payloads;
* acks: one script call per batch of finished activities (pipelined past 500), sent in the
  same round trip as the next claim when there is one;
* idle workers block on a notify list (BLPOP) and sleep until the next due time; a reaper
  returns expired leases to the ready set.

No lease tokens, heartbeats, retries, priorities or stats beyond the counter, and no socket
timeouts (redis-py 8's default ``socket_timeout=5`` wraps every send in ``asyncio.wait_for``,
a task per command on Python 3.11): it is a reference, not a product.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

__all__ = ["CeilingClient", "CeilingWorker"]

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS payloads, ready, notify; ARGV delay_ms, id1, payload1, ...
ENQUEUE = (
    _NOW
    + """
local due = now + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], due, ARGV[i])
end
if redis.call('LLEN', KEYS[3]) < 64 then redis.call('RPUSH', KEYS[3], '1') end
return #ARGV - 1
"""
)

# KEYS ready, inflight, payloads; ARGV max, lease_ms -> {now, next_due or -1, id, payload, ...}
CLAIM = (
    _NOW
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {tostring(now), '-1'}
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  local deadline = now + tonumber(ARGV[2])
  local za = {}
  for i = 1, #ids do za[#za + 1] = deadline; za[#za + 1] = ids[i] end
  redis.call('ZADD', KEYS[2], unpack(za))
  local payloads = redis.call('HMGET', KEYS[3], unpack(ids))
  for i = 1, #ids do out[#out + 1] = ids[i]; out[#out + 1] = payloads[i] or '' end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt > 0 then out[2] = nxt[2] end
return out
"""
)

# KEYS inflight, payloads, done, result1, result2, ...; ARGV ttl_s, id1, result1, ...
ACK = """
local n = 0
for i = 4, #KEYS do
  local j = (i - 4) * 2 + 2
  if redis.call('ZREM', KEYS[1], ARGV[j]) == 1 then
    redis.call('HDEL', KEYS[2], ARGV[j])
    redis.call('SET', KEYS[i], ARGV[j + 1], 'EX', ARGV[1])
    n = n + 1
  end
end
if n > 0 then redis.call('INCRBY', KEYS[3], n) end
return n
"""

# KEYS inflight, ready, notify -> number of expired leases handed back
REAP = (
    _NOW
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
for i = 1, #ids do
  redis.call('ZREM', KEYS[1], ids[i])
  redis.call('ZADD', KEYS[2], now, ids[i])
end
if #ids > 0 then redis.call('RPUSH', KEYS[3], '1') end
return #ids
"""
)

_ENQUEUE_CHUNK = 1000
_CLAIM_MAX = 50
_ACK_CHUNK = 500


class _Keys:
    def __init__(self, queue: str) -> None:
        p = f"ceiling:{{{queue}}}"
        self.payloads = f"{p}:payloads"
        self.ready = f"{p}:ready"
        self.inflight = f"{p}:inflight"
        self.notify = f"{p}:notify"
        self.done = f"{p}:done"
        self.result_prefix = f"{p}:result:"


class _Shas:
    def __init__(self) -> None:
        self.enqueue = self.claim = self.ack = self.reap = ""

    async def load(self, r: aioredis.Redis) -> None:
        self.enqueue = await r.script_load(ENQUEUE)
        self.claim = await r.script_load(CLAIM)
        self.ack = await r.script_load(ACK)
        self.reap = await r.script_load(REAP)


class CeilingClient:
    """Enqueue side: ``enqueue`` (coalescing concurrent callers) and ``enqueue_many``."""

    def __init__(self, url: str, queue: str) -> None:
        self.redis = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        self.keys = _Keys(queue)
        self.shas = _Shas()
        self._pending: list[tuple[str, str, int, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self.shas.load(self.redis)

    async def aclose(self) -> None:
        await self.redis.aclose()

    def _call(self, pipe: Any, delay_ms: int, items: list[tuple[str, str]]) -> None:
        k = self.keys
        args: list[Any] = [delay_ms]
        for activity_id, payload in items:
            args += [activity_id, payload]
        pipe.evalsha(self.shas.enqueue, 3, k.payloads, k.ready, k.notify, *args)

    async def enqueue_many(self, payloads: list[str]) -> list[str]:
        items = [(uuid.uuid4().hex, p) for p in payloads]
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in range(0, len(items), _ENQUEUE_CHUNK):
                self._call(pipe, 0, items[i : i + _ENQUEUE_CHUNK])
            await pipe.execute()
        return [i for i, _ in items]

    async def enqueue(self, payload: str, delay: float = 0.0) -> str:
        activity_id = uuid.uuid4().hex
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((activity_id, payload, round(delay * 1000), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future
        return activity_id

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    start = 0
                    for i in range(1, len(batch) + 1):
                        if i == len(batch) or batch[i][2] != batch[start][2] or i - start >= 1000:
                            self._call(
                                pipe, batch[start][2], [(b[0], b[1]) for b in batch[start:i]]
                            )
                            start = i
                    await pipe.execute()
            except Exception as exc:
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for *_, fut in batch:
                if not fut.done():
                    fut.set_result(None)


Handler = Callable[[Any], Awaitable[Any]]


class CeilingWorker:
    """``concurrency`` slot coroutines fed by a claim loop; acks sent in batches."""

    def __init__(
        self, url: str, queue: str, handler: Handler, concurrency: int, lease: float = 30.0
    ) -> None:
        self.redis = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        self.keys = _Keys(queue)
        self.shas = _Shas()
        self.handler = handler
        self.concurrency = concurrency
        self.lease_ms = round(lease * 1000)
        self.result_ttl = 3600
        self._outstanding = 0
        self._local: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._free = asyncio.Event()
        self._wake = asyncio.Event()
        self._acks: list[tuple[str, str]] = []
        self._ack_ready = asyncio.Event()

    async def run(self) -> None:
        await self.shas.load(self.redis)
        tasks = [asyncio.create_task(self._slot()) for _ in range(self.concurrency)]
        tasks += [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self._wake_loop()),
            asyncio.create_task(self._ack_loop()),
            asyncio.create_task(self._reap_loop()),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await self.redis.aclose()

    async def _claim_loop(self) -> None:
        k = self.keys
        while True:
            free = self.concurrency - self._outstanding
            if free <= 0:
                self._free.clear()
                await self._free.wait()
                continue
            want = min(free, _CLAIM_MAX)
            self._wake.clear()
            # Finished activities' acks ride along with the claim: one round trip for both.
            acks, self._acks = self._acks, []
            async with self.redis.pipeline(transaction=False) as pipe:
                self._queue_acks(pipe, acks)
                pipe.evalsha(
                    self.shas.claim, 3, k.ready, k.inflight, k.payloads, want, self.lease_ms
                )
                reply = (await pipe.execute())[-1]
            now, next_due = int(reply[0]), int(reply[1])
            got = (len(reply) - 2) // 2
            self._outstanding += got
            for i in range(2, len(reply), 2):
                self._local.put_nowait((reply[i], reply[i + 1]))
            if got < want:
                wait = 1.0 if next_due < 0 else max(0.0, (next_due - now) / 1000)
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()

    async def _wake_loop(self) -> None:
        while True:
            if await self.redis.blpop([self.keys.notify], timeout=1) is not None:
                self._wake.set()

    async def _slot(self) -> None:
        while True:
            activity_id, payload = await self._local.get()
            try:
                result = await self.handler(json.loads(payload) if payload else None)
                self._acks.append((activity_id, json.dumps(result)))
                self._ack_ready.set()
            finally:
                self._outstanding -= 1
                self._free.set()

    def _queue_acks(self, pipe: Any, acks: list[tuple[str, str]]) -> None:
        k = self.keys
        for i in range(0, len(acks), _ACK_CHUNK):
            chunk = acks[i : i + _ACK_CHUNK]
            keys = [k.inflight, k.payloads, k.done, *(k.result_prefix + a for a, _ in chunk)]
            args: list[Any] = [self.result_ttl]
            for a, r in chunk:
                args += [a, r]
            pipe.evalsha(self.shas.ack, len(keys), *keys, *args)

    async def _ack_loop(self) -> None:
        """Acks that no claim took along (the worker is idle or full)."""
        while True:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            await asyncio.sleep(0)  # let a claim take them first
            batch, self._acks = self._acks, []
            if not batch:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                self._queue_acks(pipe, batch)
                await pipe.execute()

    async def _reap_loop(self) -> None:
        k = self.keys
        while True:
            await asyncio.sleep(5.0)
            if await self.redis.evalsha(self.shas.reap, 3, k.inflight, k.ready, k.notify):
                self._wake.set()
