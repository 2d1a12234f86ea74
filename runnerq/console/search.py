"""Search: by activity id and idempotency key (exact, O(1) per queue, over every queue), by
type among a queue's unfinished activities and by error text among its dead letters (bounded
scans that resume from a cursor).

A scan looks at ``SCAN_BUDGET`` entries per request at most and returns what it found with a
cursor to go on from: a search over a million entries is many short requests, never one that
holds Redis or the console for long.

* type: ``HSCAN`` of the queue's records (pending, scheduled and running), in Redis's hash
  order; a page may hold up to one scan batch more than ``limit`` (a batch is never split,
  so that none of its matches is lost when the scan goes on).
* error: the dead letters newest first (the dead-letter order, ``pages.zpage``), matched
  case-insensitively on the error and the reason; it stops at ``limit`` matches exactly.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from ..keys import QueueKeys
from .cursors import BadCursor, decode_cursor, encode_cursor
from .lists import clip, record_summary
from .pages import Window, zpage

__all__ = [
    "SCAN_BATCH",
    "SCAN_BUDGET",
    "SEARCH_KINDS",
    "by_error",
    "by_id",
    "by_idempotency_key",
    "by_type",
]

SCAN_BUDGET = 5_000
SCAN_BATCH = 500
SEARCH_KINDS = ("id", "idempotency_key", "type", "error")


async def by_id(
    redis: aioredis.Redis, queues: list[QueueKeys], activity_id: str
) -> list[dict[str, Any]]:
    """The queues that know ``activity_id`` (unfinished, dead letter, completed or with a
    result still kept)."""
    async with redis.pipeline(transaction=False) as pipe:
        for keys in queues:
            pipe.hexists(keys.jobs, activity_id)
            pipe.hexists(keys.dead, activity_id)
            pipe.zscore(keys.done, activity_id)
            pipe.exists(keys.result(activity_id))
        replies = await pipe.execute()
    out = []
    for n, keys in enumerate(queues):
        job, dead, done, result = replies[4 * n : 4 * n + 4]
        if job or dead or done is not None or result:
            where = "unfinished" if job else "dead_letter" if dead else "finished"
            out.append({"queue": keys.queue, "id": activity_id, "where": where})
    return out


async def by_idempotency_key(
    redis: aioredis.Redis, queues: list[QueueKeys], key: str
) -> list[dict[str, Any]]:
    """The activity each queue keeps for idempotency key ``key`` (while the key's TTL runs)."""
    async with redis.pipeline(transaction=False) as pipe:
        for keys in queues:
            pipe.get(keys.idempotency(key))
        replies = await pipe.execute()
    return [
        {"queue": keys.queue, "id": str(found), "idempotency_key": key}
        for keys, found in zip(queues, replies, strict=True)
        if found is not None
    ]


async def by_type(
    redis: aioredis.Redis, keys: QueueKeys, activity_type: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    position = 0
    kind = f"type:{keys.queue}"
    if cursor:
        value = decode_cursor(cursor, kind).get("p")
        if not isinstance(value, int) or value < 0:
            raise BadCursor("bad cursor: no position")
        position = value
    needle = f'"type":{json.dumps(activity_type, ensure_ascii=False)}'
    items: list[dict[str, Any]] = []
    scanned = 0
    while scanned < SCAN_BUDGET and len(items) < limit:
        reply: Any = await redis.hscan(keys.jobs, position, count=SCAN_BATCH)
        position, batch = reply
        scanned += len(batch)
        for activity_id, raw in batch.items():
            if needle in raw:
                summary = record_summary(raw)
                if summary.get("type") == activity_type:
                    items.append({"id": str(activity_id), "queue": keys.queue, **summary})
        if position == 0:
            break
    return {
        "items": items,
        "scanned": scanned,
        "next": None if position == 0 else encode_cursor(kind, p=int(position)),
    }


async def by_error(
    redis: aioredis.Redis, keys: QueueKeys, text: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    kind = f"error:{keys.queue}"
    after: tuple[str, float] | None = None
    if cursor:
        doc = decode_cursor(cursor, kind)
        member, score = doc.get("i"), doc.get("s")
        if not isinstance(member, str) or not isinstance(score, int | float):
            raise BadCursor("bad cursor: no position")
        after = (member, float(score))
    needle = text.casefold()
    items: list[dict[str, Any]] = []
    scanned = 0
    more = True
    while more and scanned < SCAN_BUDGET and len(items) < limit:
        size = min(SCAN_BATCH, SCAN_BUDGET - scanned)
        rows, more = await zpage(redis, keys.dlq, Window(), True, after, size)
        if not rows:
            break
        entries: Any = await redis.hmget(keys.dead, [member for member, _ in rows])
        for n, (row, raw) in enumerate(zip(rows, entries, strict=True)):
            scanned += 1
            after = row
            found = _dead_match(raw, needle)
            if found is not None:
                items.append({"id": row[0], "queue": keys.queue, **found})
            if len(items) >= limit:
                more = more or n < len(rows) - 1
                break
    next_cursor = None
    if more and after is not None:
        next_cursor = encode_cursor(kind, i=after[0], s=after[1])
    return {"items": items, "scanned": scanned, "next": next_cursor}


def _dead_match(raw: str | None, needle: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    error, reason = str(doc.get("error", "")), str(doc.get("reason", ""))
    if needle not in error.casefold() and needle not in reason.casefold():
        return None
    record: dict[str, Any] = doc["record"] if isinstance(doc.get("record"), dict) else {}
    return {
        "type": record.get("type"),
        "reason": reason,
        "error": clip(error),
        "failed_at": doc.get("failed_at"),
    }
