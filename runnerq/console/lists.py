"""The per-state lists of a queue, a page at a time: ready (by priority), ready with a limit
key, scheduled, running (with worker and lease expiry), dead letters (with reason and error)
and recently completed. Each page is a few round trips whatever the list's length
(``pages.zpage``) plus one ``HMGET`` for the page's records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ..keys import QueueKeys
from ..priority import ActivityPriority
from ..store import SEQ_SPAN
from .cursors import BadCursor, decode_cursor, encode_cursor
from .pages import Window, zpage

__all__ = [
    "DEFAULT_PAGE",
    "LISTS",
    "MAX_PAGE",
    "ListRequest",
    "clip",
    "read_list",
    "record_summary",
    "worker_of_token",
]

DEFAULT_PAGE = 50
MAX_PAGE = 500
# Error texts and result previews in lists are cut to this many characters.
CLIP = 300

# name -> (attribute of QueueKeys, highest score first?, split by priority?)
LISTS: dict[str, tuple[str, bool, bool]] = {
    "ready": ("ready", False, True),
    "keyed": ("kready", False, True),
    "scheduled": ("scheduled", False, False),
    "running": ("inflight", False, False),
    "dead": ("dlq", True, False),
    "completed": ("done", True, False),
}
_PRIORITIES = {p.value: p for p in ActivityPriority}


def clip(text: str | None, limit: int = CLIP) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def worker_of_token(token: str | None) -> str | None:
    """The worker id in a lease token ``<worker id>:<seq>``."""
    if not token:
        return None
    head, sep, _ = token.rpartition(":")
    return head if sep else token


def record_summary(raw: str | None) -> dict[str, Any]:
    """What a list shows of a stored record (lenient: a corrupt one says so)."""
    if raw is None:
        return {"record": "missing"}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {"record": "corrupt"}
    if not isinstance(doc, dict):
        return {"record": "corrupt"}
    return {
        "type": doc.get("type"),
        "priority": doc.get("priority", "normal"),
        "attempts": doc.get("retry_count", 0),
        "created_at": doc.get("created_at"),
        "idempotency_key": doc.get("idempotency_key"),
        "limit_key": doc.get("limit_key"),
        "last_error": clip(doc.get("last_error")),
    }


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A page of list ``name`` (checked: ``from_query``)."""

    name: str
    priority: ActivityPriority | None
    cursor: tuple[str, float] | None
    limit: int

    @property
    def kind(self) -> str:
        return f"{self.name}:{self.priority.value if self.priority else '*'}"

    @classmethod
    def from_query(
        cls, name: str, priority: str | None, cursor: str | None, limit: str | None
    ) -> ListRequest:
        """Raises ``ValueError`` (a 400) for an unknown list or priority or a bad limit, and
        ``BadCursor`` for a cursor of another list or not made here."""
        if name not in LISTS:
            raise ValueError(f"unknown list {name!r}: one of {', '.join(LISTS)}")
        level = None
        if priority:
            if not LISTS[name][2]:
                raise ValueError(f"list {name!r} is not split by priority")
            level = _PRIORITIES.get(priority)
            if level is None:
                raise ValueError(f"unknown priority {priority!r}: one of {', '.join(_PRIORITIES)}")
        size = DEFAULT_PAGE
        if limit:
            try:
                size = int(limit)
            except ValueError:
                raise ValueError(f"limit must be a whole number, not {limit!r}") from None
            if not 1 <= size <= MAX_PAGE:
                raise ValueError(f"limit must be 1-{MAX_PAGE}, not {size}")
        request = cls(name, level, None, size)
        if cursor:
            doc = decode_cursor(cursor, request.kind)
            member, score = doc.get("i"), doc.get("s")
            if not isinstance(member, str) or not isinstance(score, int | float):
                raise BadCursor("bad cursor: no position")
            request = cls(name, level, (member, float(score)), size)
        return request

    def window(self) -> Window:
        if self.priority is None:
            return Window()
        low = self.priority.rank * SEQ_SPAN
        return Window(float(low), float(low + SEQ_SPAN))


async def read_list(redis: aioredis.Redis, keys: QueueKeys, request: ListRequest) -> dict[str, Any]:
    """``{"list", "priority", "total", "items", "next"}``: ``total`` counts the whole list
    (in its priority), ``next`` is the cursor of the next page or null at the end."""
    attr, descending, _ = LISTS[request.name]
    key = getattr(keys, attr)
    window = request.window()
    rows, more = await zpage(redis, key, window, descending, request.cursor, request.limit)
    ids = [member for member, _ in rows]
    items = await _describe(redis, keys, request.name, rows) if ids else []
    total = await redis.zcount(key, window.low_arg(), window.high_arg())
    next_cursor = None
    if more and rows:
        member, score = rows[-1]
        next_cursor = encode_cursor(request.kind, i=member, s=score)
    return {
        "list": request.name,
        "priority": request.priority.value if request.priority else None,
        "total": int(total),
        "items": items,
        "next": next_cursor,
    }


async def _describe(
    redis: aioredis.Redis, keys: QueueKeys, name: str, rows: list[tuple[str, float]]
) -> list[dict[str, Any]]:
    ids = [member for member, _ in rows]
    if name == "dead":
        entries: Any = await redis.hmget(keys.dead, ids)
        return [
            {"id": i, "order": int(s), **_dead_summary(raw)}
            for (i, s), raw in zip(rows, entries, strict=True)
        ]
    if name == "completed":
        async with redis.pipeline(transaction=False) as pipe:
            for activity_id in ids:
                pipe.get(keys.result(activity_id))
            results = await pipe.execute()
        return [
            {"id": i, "finished_ms": int(s), **_result_summary(raw)}
            for (i, s), raw in zip(rows, results, strict=True)
        ]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.jobs, ids)
        if name == "running":
            pipe.hmget(keys.leases, ids)
        replies = await pipe.execute()
    records = replies[0]
    tokens = replies[1] if name == "running" else [None] * len(ids)
    out = []
    for (activity_id, score), raw, token in zip(rows, records, tokens, strict=True):
        item: dict[str, Any] = {"id": activity_id, **record_summary(raw)}
        if name == "scheduled":
            item["due_ms"] = int(score)
        elif name == "running":
            item["lease_expires_ms"] = int(score)
            item["worker"] = worker_of_token(token)
        out.append(item)
    return out


def _dead_summary(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {"record": "missing"}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {"record": "corrupt", "reason": "corrupt", "error": "dead-letter entry is corrupt"}
    if not isinstance(doc, dict):
        return {"record": "corrupt", "reason": "corrupt", "error": "dead-letter entry is corrupt"}
    record: dict[str, Any] = doc["record"] if isinstance(doc.get("record"), dict) else {}
    return {
        "type": record.get("type"),
        "priority": record.get("priority", "normal"),
        "attempts": record.get("retry_count", 0),
        "reason": doc.get("reason"),
        "error": clip(str(doc.get("error", ""))),
        "failed_at": doc.get("failed_at"),
        "requeueable": bool(record),
    }


def _result_summary(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {"status": "completed", "result": None, "result_expired": True}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {"status": "unknown", "result": None}
    if not isinstance(doc, dict):
        return {"status": "unknown", "result": None}
    preview = json.dumps(doc.get("result"), ensure_ascii=False)
    return {"status": doc.get("status"), "result": clip(preview)}
