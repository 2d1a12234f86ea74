"""The aiohttp application: who may call (``auth``), CSRF (``csrf``), JSON errors, security
headers, and the routes (``routes``); in a cluster, the ActivityQueues' status (``cluster``)
and an Event per action (``kube_audit``); ``serve`` runs it until cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
from aiohttp import web

from ..connection import REDIS_ERRORS, connect
from ..errors import RedisUnavailableError
from .audit import ActionHook, AuditLog
from .auth import Authenticator, TokenTable
from .cluster import ClusterStatus
from .csrf import csrf_ok
from .errors import ApiError, error_response
from .kube import KubeClient
from .kube_audit import KubeAuditHook
from .routes import CALLER, CONSOLE, Console
from .settings import ConsoleSettings

__all__ = ["create_app", "serve"]

log = logging.getLogger("runnerq.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REDIS_FAILURES: tuple[type[BaseException], ...] = (
    *REDIS_ERRORS,
    rexc.RedisError,
    RedisUnavailableError,
)

# Seconds open requests (live streams) get to end when the console stops, before they are
# cancelled: well within a pod's termination grace period.
SHUTDOWN_SECONDS = 3.0
# ActivityQueues read per list, at most (pages of 500): the overview of more needs
# --kube-namespace.
MAX_ACTIVITY_QUEUES = 5000

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# Paths anyone may fetch: the page shell and its assets hold no data.
_OPEN = ("/static/", "/healthz")


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def create_app(
    settings: ConsoleSettings,
    redis: aioredis.Redis | None = None,
    hooks: Sequence[ActionHook] = (),
) -> web.Application:
    """The console's application. Without ``redis`` it connects to ``settings.redis_url``
    (and closes that connection on cleanup); ``hooks`` run after each audited action."""
    tokens = TokenTable.from_file(settings.tokens_file) if settings.tokens_file else None
    authenticator = Authenticator(
        tokens,
        settings.trusted_proxies,
        settings.group_roles,
        settings.proxy_default_role,
        settings.read_only,
        settings.no_auth,
    )
    owns = redis is None
    client = redis if redis is not None else connect(settings.redis_url)
    kube: KubeClient | None = None
    cluster: ClusterStatus | None = None
    audit_hooks = list(hooks)
    kube_hook: KubeAuditHook | None = None
    if settings.kube is not None:
        kube = KubeClient(settings.kube)
        cluster = ClusterStatus(_lister(kube, settings.kube_namespaces), most=MAX_ACTIVITY_QUEUES)
        if settings.kube_events:
            kube_hook = KubeAuditHook(kube, cluster)
            audit_hooks.append(kube_hook)
    console = Console(settings, client, AuditLog(client, audit_hooks), cluster)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message)
        except web.HTTPException as exc:
            if not _is_api(request) or exc.status < 400:
                raise
            response = error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        except _REDIS_FAILURES as exc:
            # The message of a connection error may name the server: it is logged, never sent.
            log.warning("Redis failed during %s %s: %r", request.method, request.path, exc)
            response = error_response(503, "redis_unavailable", "Redis cannot be reached now")
        if not response.prepared:
            response.headers.update(_SECURITY_HEADERS)
        return response

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/" or request.path.startswith(_OPEN):
            return await handler(request)
        who = authenticator.identify(request.remote, request.headers)
        if who is None:
            raise ApiError(
                401,
                "unauthenticated",
                "send 'Authorization: Bearer <token>' or come through the trusted proxy",
            )
        CALLER.set(who)
        if not csrf_ok(request.method, request.cookies, request.headers):
            raise ApiError(
                403,
                "csrf",
                "missing or wrong X-CSRF-Token: send the token GET /api/session gives,"
                " with its cookie",
            )
        return await handler(request)

    app = web.Application(middlewares=[errors, auth], client_max_size=2 * 1024 * 1024)
    console.add_routes(app)
    app[CONSOLE] = console

    if owns:

        async def close_redis(app: web.Application) -> None:
            await client.aclose()

        app.on_cleanup.append(close_redis)
    if kube is not None:

        async def close_kube(app: web.Application) -> None:
            if kube_hook is not None:
                await kube_hook.drain()
            if cluster is not None:
                await cluster.aclose()
            await kube.aclose()

        app.on_cleanup.append(close_kube)
    return app


def _lister(kube: KubeClient, namespaces: Sequence[str]) -> Callable[[], Awaitable[list[Any]]]:
    async def fetch() -> list[Any]:
        return await kube.list_activity_queues(namespaces, most=MAX_ACTIVITY_QUEUES)

    return fetch


async def serve(settings: ConsoleSettings, hooks: Sequence[ActionHook] = ()) -> None:
    """Serve the console on ``settings.host``:``settings.port`` until cancelled."""
    app = create_app(settings, hooks=hooks)
    runner = web.AppRunner(app, access_log=log, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        log.warning("runnerq console on http://%s:%d/", settings.host, settings.port)
        if settings.kube is not None:
            log.warning(
                "reading ActivityQueues of %s from %s%s",
                ", ".join(settings.kube_namespaces) or "every namespace",
                settings.kube.server,
                "; an Event per action" if settings.kube_events else "",
            )
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
