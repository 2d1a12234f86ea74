"""What the console's buttons do, each through the client and store the CLI uses (never by
writing a queue's keys itself): requeue and purge dead letters, cancel, pause and resume,
trigger a schedule, enqueue.

Requeueing every dead letter is done in steps that each take a bounded time
(``REQUEUE_STEP`` entries or ``REQUEUE_STEP_SECONDS``): the preview names the count and the
last entry the run covers (``through``), and each step returns a cursor for the next one. A
page calls step after step until ``next`` is null; nothing is kept between steps on the
server, so a restart or another replica carries on from the cursor, and dead letters that
arrive after the preview are left for the next run.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from ..client import ActivityClient
from ..config import QueueSettings
from ..keys import QueueKeys
from ..options import ActivityOption
from ..priority import ActivityPriority
from .cursors import BadCursor, decode_cursor, encode_cursor
from .pages import Window, zpage

__all__ = [
    "MAX_SELECTED",
    "REQUEUE_STEP",
    "cancel",
    "enqueue",
    "queue_client",
    "requeue_all_step",
    "requeue_preview",
    "requeue_selected",
]

MAX_SELECTED = 1000
REQUEUE_STEP = 5000
REQUEUE_STEP_SECONDS = 5.0
REQUEUE_BATCH = 200
_CONCURRENCY = 32
_CANCELLED = {0: None, 1: "pending", 2: "scheduled", 3: "running"}


@asynccontextmanager
async def queue_client(redis: aioredis.Redis, queue: str) -> AsyncIterator[ActivityClient]:
    """An ``ActivityClient`` of ``queue`` on the console's connection pool (left open)."""
    client = ActivityClient(queue_name=queue, redis=redis, queue_settings=QueueSettings(queue))
    try:
        yield client
    finally:
        await client.aclose()


async def _requeue_many(client: ActivityClient, ids: list[str]) -> int:
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(activity_id: str) -> bool:
        async with gate:
            return await client.requeue_dead_letter(activity_id)

    done = await asyncio.gather(*(one(i) for i in ids))
    return sum(1 for ok in done if ok)


async def requeue_selected(client: ActivityClient, ids: list[str]) -> int:
    """Requeue the given dead letters; returns how many went back (the others were gone, or
    their record is corrupt)."""
    return await _requeue_many(client, list(dict.fromkeys(ids)))


async def requeue_preview(redis: aioredis.Redis, keys: QueueKeys) -> dict[str, Any]:
    """How many dead letters a "requeue all" started now covers, and ``through``: the
    dead-letter order of the newest of them (to pass to the steps)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.dlq)
        pipe.zrange(keys.dlq, -1, -1, withscores=True)
        count, newest = await pipe.execute()
    through = int(newest[0][1]) if newest else None
    return {"count": int(count), "through": through}


async def requeue_all_step(
    client: ActivityClient, through: int, cursor: str | None
) -> dict[str, Any]:
    """Requeue dead letters oldest first, up to order ``through``, from ``cursor``; returns
    ``{"requeued", "skipped", "next"}`` (``skipped``: gone meanwhile or not requeueable)."""
    keys = client.store.keys
    kind = f"requeue:{keys.queue}:{through}"
    after: tuple[str, float] | None = None
    if cursor:
        doc = decode_cursor(cursor, kind)
        member, score = doc.get("i"), doc.get("s")
        if not isinstance(member, str) or not isinstance(score, int | float):
            raise BadCursor("bad cursor: no position")
        after = (member, float(score))
    window = Window(-math.inf, float(through) + 1)
    deadline = time.monotonic() + REQUEUE_STEP_SECONDS
    requeued = looked = 0
    more = True
    while more and looked < REQUEUE_STEP and time.monotonic() < deadline:
        rows, more = await zpage(client.redis, keys.dlq, window, False, after, REQUEUE_BATCH)
        if not rows:
            more = False
            break
        requeued += await _requeue_many(client, [member for member, _ in rows])
        looked += len(rows)
        after = rows[-1]
    next_cursor = None
    if more and after is not None:
        next_cursor = encode_cursor(kind, i=after[0], s=after[1])
    return {"requeued": requeued, "skipped": looked - requeued, "next": next_cursor}


async def cancel(client: ActivityClient, activity_id: str) -> str | None:
    """Cancel it; returns what it was (pending, scheduled, running) or None when it was not
    unfinished."""
    return _CANCELLED.get(await client.store.cancel(activity_id))


_ENQUEUE_FIELDS = (
    "type",
    "payload",
    "priority",
    "delay",
    "max_retries",
    "timeout",
    "idempotency_key",
    "metadata",
    "limit_key",
)


async def enqueue(client: ActivityClient, body: Any) -> dict[str, Any]:
    """Enqueue what the form sent (a JSON object; see docs/console.md); ``ConfigurationError``
    or ``ValueError`` for bad input, before anything is written."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(body) - set(_ENQUEUE_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown field(s): {', '.join(unknown)}; known: {', '.join(_ENQUEUE_FIELDS)}"
        )
    activity_type = body.get("type")
    if not isinstance(activity_type, str) or not activity_type.strip():
        raise ValueError("'type' must be a non-empty string")
    for name in ("delay", "timeout"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"'{name}' must be a number of seconds")
    retries = body.get("max_retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
        raise ValueError("'max_retries' must be a whole number")
    for name in ("idempotency_key", "limit_key"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"'{name}' must be a string")
    options = ActivityOption(
        priority=ActivityPriority.parse(str(body.get("priority") or "normal")),
        delay=body.get("delay") or None,
        max_retries=retries,
        timeout=body.get("timeout"),
        idempotency_key=body.get("idempotency_key") or None,
        metadata=body.get("metadata"),
        limit_key=body.get("limit_key") or None,
    )
    future = await client.execute_activity(activity_type.strip(), body.get("payload"), options)
    return {"id": future.activity_id, "created": future.created}
