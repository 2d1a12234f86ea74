"""Live updates: a server-sent events stream per open page, rate-limited and coalesced.

Each stream reads its snapshot (the counts of the queues it shows, the first page of the
open list, the open activity) at most once per ``interval`` and sends it only when it
changed; every ``KEEPALIVE`` seconds a comment line keeps proxies from closing an idle
stream. Streams of one process that show the same thing share one read per interval
(``Snapshots``), so a hundred browsers on one page cost Redis what one does, however busy the
queue is. A stream ends after ``MAX_STREAM_SECONDS`` (the browser reconnects, possibly to
another replica); at most ``MAX_STREAMS`` run in one process (more get 503, and the page
falls back to polling).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from aiohttp import web

__all__ = ["KEEPALIVE", "MAX_STREAMS", "MAX_STREAM_SECONDS", "Snapshots", "stream"]

KEEPALIVE = 15.0
MAX_STREAMS = 200
MAX_STREAM_SECONDS = 600.0

Reader = Callable[[], Awaitable[Any]]


class Snapshots:
    """One read per ``interval`` for each distinct thing watched, shared by every stream
    watching it. A read that began before ``since`` (a stream's opening) is not shared with
    it: a page that just read the API must not be sent something older. Entries older than
    a few intervals are dropped on the next use: the cache never holds more than what
    streams watch now."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._entries: dict[Hashable, tuple[float, asyncio.Task[Any]]] = {}
        self.reads = 0  # reads made (tests, benchmarks)

    async def get(self, key: Hashable, read: Reader, since: float = -math.inf) -> Any:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or now - entry[0] >= self.interval or entry[0] < since:
            self._prune(now)
            task = asyncio.ensure_future(read())
            self.reads += 1
            entry = (now, task)
            self._entries[key] = entry
        return await asyncio.shield(entry[1])

    def _prune(self, now: float) -> None:
        stale = [k for k, (t, task) in self._entries.items() if now - t > 5 * self.interval]
        for k in stale:
            task = self._entries.pop(k)[1]
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failed read is not reported again


class StreamGate:
    """How many streams run in this process."""

    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.limit = limit
        self.open = 0


async def stream(
    request: web.Request,
    gate: StreamGate,
    snapshots: Snapshots,
    key: Hashable,
    read: Reader,
    max_seconds: float = MAX_STREAM_SECONDS,
) -> web.StreamResponse:
    if gate.open >= gate.limit:
        raise web.HTTPServiceUnavailable(
            text=json.dumps(
                {"error": {"code": "busy", "message": "too many live streams: poll instead"}}
            ),
            content_type="application/json",
        )
    gate.open += 1
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(f"retry: {int(snapshots.interval * 2000)}\n\n".encode())
        last: str | None = None
        started = last_write = time.monotonic()
        while time.monotonic() - started < max_seconds:
            try:
                data = await snapshots.get(key, read, since=started)
                text = json.dumps(data, separators=(",", ":"), sort_keys=True)
                event = "update"
            except web.HTTPException as exc:
                text, event = exc.text or "{}", "error"
            except Exception as exc:  # Redis away: say so, keep the stream, try again
                text = json.dumps({"error": {"code": "unavailable", "message": _brief(exc)}})
                event = "error"
            now = time.monotonic()
            if text != last:
                await response.write(f"event: {event}\ndata: {text}\n\n".encode())
                last, last_write = text, now
            elif now - last_write >= KEEPALIVE:
                await response.write(b": keepalive\n\n")
                last_write = now
            await asyncio.sleep(snapshots.interval)
        return response
    except ConnectionResetError:
        # The browser left (its page closed): the write that found out ends the stream. Not
        # an error to log, and never a "Redis failed" (the middleware's view of an OSError).
        return response
    finally:
        gate.open -= 1


def _brief(exc: Exception) -> str:
    """What to tell the page about a failed read: its kind only (never a URL or address)."""
    return f"cannot read Redis ({type(exc).__name__})"
