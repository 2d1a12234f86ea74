"""One activity, everything known about it, in one round trip: its record (payload,
metadata, attempts), where it is (ready, scheduled, running with its worker and lease, dead
letter, completed, cancelled), its result or error, its progress and its event timeline."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from ..keys import QueueKeys
from .lists import worker_of_token
from .telemetry import events_key, parse_events, parse_progress, progress_key

__all__ = ["read_activity"]


def _json(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"corrupt": True, "raw": raw[:2000]}


async def read_activity(
    redis: aioredis.Redis, keys: QueueKeys, activity_id: str
) -> dict[str, Any] | None:
    """The activity's document, or None when Redis knows nothing of it (never enqueued, or
    finished so long ago that its result expired)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.jobs, activity_id)
        pipe.zscore(keys.ready, activity_id)
        pipe.zscore(keys.kready, activity_id)
        pipe.zscore(keys.scheduled, activity_id)
        pipe.zscore(keys.inflight, activity_id)
        pipe.hget(keys.leases, activity_id)
        pipe.hget(keys.dead, activity_id)
        pipe.zscore(keys.done, activity_id)
        pipe.get(keys.result(activity_id))
        pipe.hget(keys.redeliveries, activity_id)
        pipe.lrange(events_key(keys, activity_id), 0, -1)
        pipe.hget(progress_key(keys), activity_id)
        (
            record,
            ready,
            kready,
            scheduled,
            inflight,
            token,
            dead,
            done,
            result,
            redeliveries,
            events,
            progress,
        ) = await pipe.execute()
    result_doc = _json(result)
    status = result_doc.get("status") if isinstance(result_doc, dict) else None
    if inflight is not None:
        state = "running"
    elif ready is not None or kready is not None:
        state = "ready"
    elif scheduled is not None:
        state = "scheduled"
    elif dead is not None:
        state = "dead_lettered"
    elif status in ("completed", "cancelled", "dead_lettered"):
        state = status
    elif done is not None:
        state = "completed"
    elif record is not None:
        state = "in_transition"  # between two sets inside a script: only seen by a racing read
    else:
        return None
    dead_doc = _json(dead)
    record_doc = _json(record)
    if (
        record_doc is None
        and isinstance(dead_doc, dict)
        and isinstance(dead_doc.get("record"), dict)
    ):
        record_doc = dead_doc["record"]
    doc: dict[str, Any] = {
        "id": activity_id,
        "queue": keys.queue,
        "state": state,
        "record": record_doc,
        "attempts": record_doc.get("retry_count", 0) if isinstance(record_doc, dict) else None,
        "redeliveries": int(redeliveries) if redeliveries else 0,
        "result": result_doc,
        "dead_letter": None,
        "progress": parse_progress(progress),
        "events": parse_events(events) if events else None,
    }
    if state == "ready":
        doc["ready_score"] = ready if ready is not None else kready
        doc["keyed"] = ready is None
    if state == "scheduled":
        doc["due_ms"] = int(scheduled)
    if state == "running":
        doc["lease_expires_ms"] = int(inflight)
        doc["worker"] = worker_of_token(token)
    if done is not None:
        doc["finished_ms"] = int(done)
    if isinstance(dead_doc, dict):
        doc["dead_letter"] = {
            "reason": dead_doc.get("reason"),
            "error": dead_doc.get("error"),
            "failed_at": dead_doc.get("failed_at"),
            "raw": dead_doc.get("raw"),
            "requeueable": isinstance(dead_doc.get("record"), dict),
        }
    return doc
