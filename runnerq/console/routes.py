"""The JSON API: one handler per route, shared by the pages and by scripts (docs/console.md
lists every route with its parameters, answers and errors).

Handlers check the caller's role before anything else (``_need``), name the queue through
``_queue`` (404 for a queue the console does not show) and act through ``actions``; every
action is appended to the audit before its answer is sent.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from ..errors import ConfigurationError, SerializationError
from ..keys import QueueKeys, validate_queue_name
from ..schedule import validate_schedule_name
from . import actions, search
from .activity import read_activity
from .audit import AuditLog
from .auth import Identity, Role
from .cluster import ClusterStatus
from .csrf import CSRF_COOKIE, new_csrf_token
from .cursors import BadCursor
from .errors import ApiError
from .lists import MAX_PAGE, ListRequest, read_list
from .overview import queue_counts, queue_overview, queues_overview
from .settings import ConsoleSettings
from .sse import Snapshots, StreamGate, stream
from .telemetry import QUEUES_KEY, discover_queues, read_workers

__all__ = ["CALLER", "CONSOLE", "STATIC", "Console"]

STATIC = Path(__file__).parent / "static"
# Queues whose counts one live update of the overview reads, at most.
MAX_LIVE_QUEUES = 50


# The caller of the request being handled (set by the app's auth middleware; each request
# runs in a task of its own). A context variable rather than request storage, whose typed
# keys need a recent aiohttp.
CALLER: ContextVar[Identity] = ContextVar("runnerq_console_caller")


def identity(request: web.Request) -> Identity:
    return CALLER.get()


def _need(request: web.Request, role: Role) -> Identity:
    who = identity(request)
    if not who.role.allows(role):
        raise ApiError(
            403,
            "forbidden",
            f"this needs the {role.value} role; {who.name} is a {who.role.value}",
        )
    return who


def _limit(request: web.Request, default: int = 50) -> int:
    text = request.query.get("limit")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"limit must be a whole number, not {text!r}") from None
    if not 1 <= value <= MAX_PAGE:
        raise ApiError(400, "bad_request", f"limit must be 1-{MAX_PAGE}, not {value}")
    return value


async def _body(request: web.Request) -> Any:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ApiError(400, "bad_json", f"the body is not JSON: {exc}") from None


class Console:
    """The API's handlers over one Redis client (``app[CONSOLE]``)."""

    def __init__(
        self,
        settings: ConsoleSettings,
        redis: aioredis.Redis,
        audit: AuditLog,
        cluster: ClusterStatus | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.audit = audit
        self.cluster = cluster  # the ActivityQueues, in a cluster (overview's "cluster")
        self.snapshots = Snapshots(settings.sse_interval)
        self.gate = StreamGate()

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self.index)
        r.add_get("/healthz", self.healthz)
        r.add_static("/static/", STATIC, append_version=False)
        r.add_get("/api/session", self.session)
        r.add_get("/api/queues", self.queues)
        r.add_get("/api/queues/{queue}", self.queue)
        r.add_get("/api/queues/{queue}/lists/{list}", self.list_page)
        r.add_get("/api/queues/{queue}/activities/{id}", self.activity)
        r.add_post("/api/queues/{queue}/activities", self.enqueue)
        r.add_post("/api/queues/{queue}/activities/{id}/cancel", self.cancel)
        r.add_get("/api/queues/{queue}/workers", self.workers)
        r.add_get("/api/queues/{queue}/schedules", self.schedules)
        r.add_post("/api/queues/{queue}/schedules/{name}/trigger", self.trigger)
        r.add_get("/api/queues/{queue}/limits", self.limits)
        r.add_post("/api/queues/{queue}/pause", self.pause)
        r.add_post("/api/queues/{queue}/resume", self.resume)
        r.add_post("/api/queues/{queue}/dead/requeue", self.requeue)
        r.add_get("/api/queues/{queue}/dead/requeue-all", self.requeue_preview)
        r.add_post("/api/queues/{queue}/dead/requeue-all", self.requeue_all)
        r.add_post("/api/queues/{queue}/dead/purge", self.purge)
        r.add_get("/api/search", self.search)
        r.add_get("/api/audit", self.audit_page)
        r.add_get("/api/events", self.events)

    # -- helpers -----------------------------------------------------------------------

    async def visible_queues(self) -> list[str]:
        if self.settings.queues:
            return list(self.settings.queues)
        return await discover_queues(self.redis)

    async def _queue(self, request: web.Request) -> str:
        return await self.known_queue(request.match_info["queue"])

    async def known_queue(self, name: str) -> str:
        try:
            validate_queue_name(name)
        except ConfigurationError:
            raise ApiError(404, "unknown_queue", f"no queue named {name!r}") from None
        if self.settings.queues:
            if name not in self.settings.queues:
                raise ApiError(404, "unknown_queue", f"no queue named {name!r} in this console")
            return name
        keys = QueueKeys(name)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(QUEUES_KEY, name)
            pipe.exists(keys.stats, keys.config, keys.jobs, keys.dlq, keys.done, keys.schedules)
            registered, found = await pipe.execute()
        if not registered and not found:
            raise ApiError(404, "unknown_queue", f"no queue named {name!r}")
        return name

    # -- pages and session -------------------------------------------------------------

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def session(self, request: web.Request) -> web.Response:
        """Who you are, what you may do, and the CSRF token (also set as a cookie)."""
        who = identity(request)
        token = request.cookies.get(CSRF_COOKIE, "")
        if len(token) < 32:
            token = new_csrf_token()
        response = web.json_response(
            {
                "identity": who.as_dict(),
                "csrf": token,
                "read_only": self.settings.read_only,
                "can": {
                    "operate": who.role.allows(Role.OPERATOR),
                    "administer": who.role.allows(Role.ADMIN),
                },
                "live_interval": self.settings.sse_interval,
            }
        )
        response.set_cookie(
            CSRF_COOKIE,
            token,
            samesite="Strict",
            httponly=False,  # the page reads it to send it back in the header
            secure=self.settings.secure_cookies,
            path="/",
        )
        return response

    # -- reading -----------------------------------------------------------------------

    async def queues(self, request: web.Request) -> web.Response:
        names = await self.visible_queues()
        found = await queues_overview(self.redis, names, self.cluster)
        return web.json_response({"queues": found})

    async def queue(self, request: web.Request) -> web.Response:
        queue = await self._queue(request)
        return web.json_response(await queue_overview(self.redis, queue, self.cluster))

    def _list_request(self, request: web.Request, name: str) -> ListRequest:
        q = request.query
        try:
            return ListRequest.from_query(name, q.get("priority"), q.get("cursor"), q.get("limit"))
        except BadCursor as exc:
            raise ApiError(400, "bad_cursor", str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None

    async def list_page(self, request: web.Request) -> web.Response:
        queue = await self._queue(request)
        wanted = self._list_request(request, request.match_info["list"])
        return web.json_response(await read_list(self.redis, QueueKeys(queue), wanted))

    async def activity(self, request: web.Request) -> web.Response:
        queue = await self._queue(request)
        activity_id = request.match_info["id"]
        doc = await read_activity(self.redis, QueueKeys(queue), activity_id)
        if doc is None:
            raise ApiError(404, "not_found", f"no activity {activity_id!r} on queue {queue!r}")
        return web.json_response(doc)

    async def workers(self, request: web.Request) -> web.Response:
        queue = await self._queue(request)
        found = await read_workers(self.redis, QueueKeys(queue))
        return web.json_response({"workers": [w.as_dict() for w in found]})

    async def schedules(self, request: web.Request) -> web.Response:
        queue = await self._queue(request)
        async with actions.queue_client(self.redis, queue) as client:
            infos = await client.schedules.list()
        out = []
        for info in infos:
            doc = info.as_dict()
            doc["trigger"] = None if info.schedule is None else info.schedule.trigger.describe()
            out.append(doc)
        return web.json_response({"schedules": out})

    async def limits(self, request: web.Request) -> web.Response:
        queue = await self._queue(request)
        async with actions.queue_client(self.redis, queue) as client:
            try:
                limits: dict[str, Any] = (await client.get_limits()).to_dict()
                stats = (await client.get_limit_stats()).as_dict()
            except ConfigurationError as exc:  # limits written by hand: say so
                limits, stats = {"error": str(exc)}, {}
        return web.json_response({"limits": limits, "stats": stats})

    async def search(self, request: web.Request) -> web.Response:
        q = request.query
        by = q.get("by", "id")
        text = q.get("q", "").strip()
        if by not in search.SEARCH_KINDS:
            raise ApiError(
                400, "bad_request", f"by must be one of {', '.join(search.SEARCH_KINDS)}"
            )
        if not text:
            raise ApiError(400, "bad_request", "give the text to search for as q")
        limit = _limit(request)
        if by in ("id", "idempotency_key"):
            names = [await self.known_queue(q["queue"])] if q.get("queue") else None
            keys = [QueueKeys(n) for n in names or await self.visible_queues()]
            if by == "id":
                items = await search.by_id(self.redis, keys, text)
            else:
                items = await search.by_idempotency_key(self.redis, keys, text)
            return web.json_response({"by": by, "items": items[:limit], "next": None})
        if not q.get("queue"):
            raise ApiError(400, "bad_request", f"a search by {by} needs a queue")
        keys_one = QueueKeys(await self.known_queue(q["queue"]))
        try:
            if by == "type":
                found = await search.by_type(self.redis, keys_one, text, q.get("cursor"), limit)
            else:
                found = await search.by_error(self.redis, keys_one, text, q.get("cursor"), limit)
        except BadCursor as exc:
            raise ApiError(400, "bad_cursor", str(exc)) from None
        return web.json_response({"by": by, **found})

    async def audit_page(self, request: web.Request) -> web.Response:
        try:
            page = await self.audit.read(request.query.get("cursor"), _limit(request))
        except BadCursor as exc:
            raise ApiError(400, "bad_cursor", str(exc)) from None
        return web.json_response(page)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """The live stream of what the page shows (see ``sse``)."""
        q = request.query
        queue = await self.known_queue(q["queue"]) if q.get("queue") else None
        wanted = None
        if q.get("list"):
            if queue is None:
                raise ApiError(400, "bad_request", "a list needs a queue")
            wanted = self._list_request(request, q["list"])
        activity_id = q.get("activity") or None
        if activity_id is not None and queue is None:
            raise ApiError(400, "bad_request", "an activity needs a queue")
        key = (queue, wanted, activity_id)
        return await stream(request, self.gate, self.snapshots, key, self._live(key))

    def _live(self, key: tuple[str | None, ListRequest | None, str | None]) -> Any:
        queue, wanted, activity_id = key

        async def read() -> dict[str, Any]:
            names = [queue] if queue else (await self.visible_queues())[:MAX_LIVE_QUEUES]
            out: dict[str, Any] = {
                "queues": [await queue_counts(self.redis, name) for name in names]
            }
            if queue is not None and wanted is not None:
                out["list"] = await read_list(self.redis, QueueKeys(queue), wanted)
            if queue is not None and activity_id is not None:
                out["activity"] = await read_activity(self.redis, QueueKeys(queue), activity_id)
            return out

        return read

    # -- actions -----------------------------------------------------------------------

    async def enqueue(self, request: web.Request) -> web.Response:
        who = _need(request, Role.OPERATOR)
        queue = await self._queue(request)
        body = await _body(request)
        async with actions.queue_client(self.redis, queue) as client:
            try:
                done = await actions.enqueue(client, body)
            except (ValueError, SerializationError) as exc:
                raise ApiError(400, "bad_request", str(exc)) from None
        await self.audit.record(who, "enqueue", queue, done["id"], 1 if done["created"] else 0)
        return web.json_response(done, status=201 if done["created"] else 200)

    async def cancel(self, request: web.Request) -> web.Response:
        who = _need(request, Role.OPERATOR)
        queue = await self._queue(request)
        activity_id = request.match_info["id"]
        async with actions.queue_client(self.redis, queue) as client:
            was = await actions.cancel(client, activity_id)
        if was is None:
            raise ApiError(
                409,
                "not_unfinished",
                f"activity {activity_id!r} is not pending, scheduled or running",
            )
        await self.audit.record(who, "cancel", queue, activity_id, 1)
        return web.json_response({"id": activity_id, "cancelled": True, "was": was})

    async def _pause(self, request: web.Request, paused: bool) -> web.Response:
        who = _need(request, Role.OPERATOR)
        queue = await self._queue(request)
        async with actions.queue_client(self.redis, queue) as client:
            await client.set_queue_config(paused=paused)
        await self.audit.record(who, "pause" if paused else "resume", queue)
        return web.json_response({"queue": queue, "paused": paused})

    async def pause(self, request: web.Request) -> web.Response:
        return await self._pause(request, True)

    async def resume(self, request: web.Request) -> web.Response:
        return await self._pause(request, False)

    async def trigger(self, request: web.Request) -> web.Response:
        who = _need(request, Role.OPERATOR)
        queue = await self._queue(request)
        name = request.match_info["name"]
        try:
            validate_schedule_name(name)
        except ConfigurationError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        async with actions.queue_client(self.redis, queue) as client:
            info = await client.schedules.get(name)
            if info is None:
                raise ApiError(404, "not_found", f"no schedule {name!r} on queue {queue!r}")
            try:
                activity_id = await client.schedules.trigger(name)
            except ConfigurationError as exc:
                raise ApiError(409, "unreadable_schedule", str(exc)) from None
        await self.audit.record(who, "trigger_schedule", queue, f"{name} -> {activity_id}", 1)
        return web.json_response({"schedule": name, "id": activity_id}, status=201)

    async def requeue(self, request: web.Request) -> web.Response:
        who = _need(request, Role.OPERATOR)
        queue = await self._queue(request)
        body = await _body(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise ApiError(400, "bad_request", 'give the dead letters as {"ids": ["<id>", ...]}')
        if len(ids) > actions.MAX_SELECTED:
            raise ApiError(
                400,
                "bad_request",
                f"at most {actions.MAX_SELECTED} ids at once; requeue all is for more",
            )
        async with actions.queue_client(self.redis, queue) as client:
            count = await actions.requeue_selected(client, ids)
        target = ids[0] if len(ids) == 1 else f"{len(ids)} selected"
        await self.audit.record(who, "requeue", queue, target, count)
        return web.json_response({"requeued": count, "asked": len(ids)})

    async def requeue_preview(self, request: web.Request) -> web.Response:
        queue = await self._queue(request)
        return web.json_response(await actions.requeue_preview(self.redis, QueueKeys(queue)))

    async def requeue_all(self, request: web.Request) -> web.Response:
        who = _need(request, Role.ADMIN)
        queue = await self._queue(request)
        body = await _body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object")
        through, cursor = body.get("through"), body.get("cursor")
        if isinstance(through, bool) or not isinstance(through, int):
            raise ApiError(
                400,
                "bad_request",
                "give 'through' from GET .../dead/requeue-all (the preview)",
            )
        if cursor is not None and not isinstance(cursor, str):
            raise ApiError(400, "bad_cursor", "bad cursor: not a string")
        async with actions.queue_client(self.redis, queue) as client:
            try:
                step = await actions.requeue_all_step(client, through, cursor)
            except BadCursor as exc:
                raise ApiError(400, "bad_cursor", str(exc)) from None
        await self.audit.record(who, "requeue_all", queue, f"through {through}", step["requeued"])
        return web.json_response(step)

    async def purge(self, request: web.Request) -> web.Response:
        who = _need(request, Role.ADMIN)
        queue = await self._queue(request)
        async with actions.queue_client(self.redis, queue) as client:
            count = await client.purge_dead_letters()
        await self.audit.record(who, "purge", queue, "dead letters", count)
        return web.json_response({"purged": count})


CONSOLE = web.AppKey("console", Console)
