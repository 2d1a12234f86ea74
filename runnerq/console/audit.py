"""The audit: every action taken through the console, in a bounded Redis stream.

``runnerq:audit`` is a stream trimmed to about ``AUDIT_CAP`` entries (``XADD MAXLEN ~``);
each entry says who (name, role, how they were identified), what (the action, the queue,
the target and how many activities it touched) and when (ms). Every replica writes to and
reads from the same stream, so a restart loses nothing. Hooks run after an entry is written
(in a cluster: a Kubernetes Event on the ActivityQueue); a hook that fails is logged and
never fails the action.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ..keys import KEY_PREFIX
from .auth import Identity
from .cursors import BadCursor, decode_cursor, encode_cursor

__all__ = ["AUDIT_CAP", "AUDIT_KEY", "ActionHook", "AuditEntry", "AuditLog"]

log = logging.getLogger("runnerq.console.audit")

AUDIT_KEY = f"{KEY_PREFIX}:audit"
AUDIT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    who: str
    role: str
    via: str
    action: str
    queue: str
    target: str
    count: int
    ms: int

    def fields(self) -> dict[str, str]:
        return {
            "who": self.who,
            "role": self.role,
            "via": self.via,
            "action": self.action,
            "queue": self.queue,
            "target": self.target,
            "count": str(self.count),
            "ms": str(self.ms),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> AuditEntry:
        def number(name: str) -> int:
            try:
                return int(fields.get(name, 0))
            except ValueError:
                return 0

        return cls(
            who=fields.get("who", ""),
            role=fields.get("role", ""),
            via=fields.get("via", ""),
            action=fields.get("action", ""),
            queue=fields.get("queue", ""),
            target=fields.get("target", ""),
            count=number("count"),
            ms=number("ms"),
        )


ActionHook = Callable[[AuditEntry], Awaitable[None]]


class AuditLog:
    def __init__(self, redis: aioredis.Redis, hooks: Sequence[ActionHook] = ()) -> None:
        self._redis = redis
        self._hooks = list(hooks)

    async def record(
        self, who: Identity, action: str, queue: str, target: str = "", count: int = 0
    ) -> AuditEntry:
        entry = AuditEntry(
            who.name,
            who.role.value,
            who.via,
            action,
            queue,
            target[:500],
            count,
            int(time.time() * 1000),
        )
        await self._redis.xadd(
            AUDIT_KEY,
            entry.fields(),  # type: ignore[arg-type]
            maxlen=AUDIT_CAP,
            approximate=True,
        )
        for hook in self._hooks:
            try:
                await hook(entry)
            except Exception:
                log.exception("audit hook %r failed for %s on %s", hook, action, queue)
        return entry

    async def read(self, cursor: str | None, limit: int) -> dict[str, Any]:
        """Newest first: ``{"items": [...], "next": cursor or null}``."""
        start = "+"
        if cursor:
            position = decode_cursor(cursor, "audit").get("i")
            if not isinstance(position, str) or not _stream_id(position):
                raise BadCursor("bad cursor: no position")
            start = f"({position}"
        raw: Any = await self._redis.xrevrange(AUDIT_KEY, start, "-", count=limit + 1)
        items = [
            {"id": str(entry_id), **_entry_dict(AuditEntry.from_fields(fields))}
            for entry_id, fields in raw[:limit]
        ]
        more = len(raw) > limit
        return {
            "items": items,
            "next": encode_cursor("audit", i=items[-1]["id"]) if more and items else None,
        }


def _entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {**entry.fields(), "count": entry.count, "ms": entry.ms}


def _stream_id(text: str) -> bool:
    ms, sep, seq = text.partition("-")
    return bool(sep) and ms.isdigit() and seq.isdigit()
