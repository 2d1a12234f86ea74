"""Connecting to Redis: clients whose pools apply ``RedisConfig``, and error translation.

The pool's own workings (recycling connections, raw commands) are in ``runnerq.transport``.
"""

from __future__ import annotations

import socket
import urllib.parse
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from .config import RedisConfig
from .errors import ConfigurationError, RedisUnavailableError
from .transport import drop_connections, lifecycle_pool, open_idle

__all__ = [
    "REDIS_ERRORS",
    "connect",
    "drop_connections",
    "redact_url",
    "translate_errors",
    "warm_up",
]

# What a lost or refused connection looks like from redis-py (and the OS).
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.BusyLoadingError,
    rexc.ReadOnlyError,
    ConnectionError,
    OSError,
)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and error messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


# TCP keepalive tuned to notice a dead peer in about 25 s (the kernel's default is 2 hours):
# runnerq sets no per-read socket timeout by default (see RedisConfig.socket_timeout).
_KEEPALIVE = {
    getattr(socket, name): value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}

_COMMON: dict[str, Any] = {
    "decode_responses": True,
    # Bytes written into a queue's keys by hand may not be UTF-8: decode them as lone
    # surrogates instead of failing the whole reply, so that the record's decoder can tell
    # them from text that really holds U+FFFD (such a record is dead-lettered as corrupt; the
    # rest of the batch runs). What runnerq writes is always UTF-8 (``encode_json``).
    "encoding_errors": "surrogateescape",
}


def connect(url: str, config: RedisConfig | None = None, **extra: Any) -> aioredis.Redis:
    """A client for ``url`` on a pool that follows ``config``; nothing is opened until first
    use (see ``warm_up``).

    ``redis://`` and ``rediss://`` (TLS) reach one server; ``unix://`` a socket;
    ``redis+cluster://[:password@]host:port[,host:port...]`` a Redis Cluster (any reachable
    nodes; the rest are discovered); ``redis+sentinel://[:password@]host:port[,...]/service[/db]``
    the current master of a Sentinel-monitored service (``rediss+`` for TLS to the servers).
    """
    config = config or RedisConfig()
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _cluster(url, config, **extra)
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel(url, config, **extra)
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"unsupported Redis URL {redact_url(url)!r}: expected redis://, rediss://, unix://,"
            " redis+cluster:// or redis+sentinel://"
        )
    try:
        pool = lifecycle_pool(
            url,
            idle_timeout=config.idle_timeout,
            max_lifetime=config.max_lifetime,
            max_connections=config.max_size,
            timeout=config.conn_timeout,
            socket_connect_timeout=config.conn_timeout,
            socket_timeout=config.socket_timeout,
            socket_keepalive=True,
            socket_keepalive_options=_KEEPALIVE,
            **_COMMON,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
            **extra,
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from exc
    return aioredis.Redis.from_pool(pool)


def _hosts(url: str) -> tuple[urllib.parse.SplitResult, str | None, list[tuple[str, int]]]:
    parts = urllib.parse.urlsplit(url)
    auth, _, hostlist = parts.netloc.rpartition("@")
    password = urllib.parse.unquote(auth.partition(":")[2]) if ":" in auth else None
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, _, port = item.strip().rpartition(":")
        try:
            hosts.append((host or "127.0.0.1", int(port)))
        except ValueError:
            raise ConfigurationError(f"bad host:port {item!r} in {redact_url(url)!r}") from None
    if not hosts:
        raise ConfigurationError(f"no hosts in {redact_url(url)!r}")
    return parts, password or None, hosts


def _cluster(url: str, config: RedisConfig, **extra: Any) -> aioredis.Redis:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    parts, password, hosts = _hosts(url)
    client = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in hosts],
        password=password,
        ssl=parts.scheme.startswith("rediss"),
        **_many_server_kwargs(config),
        **extra,
    )
    # Typed as the single-server client: runnerq uses the commands both share.
    return cast(aioredis.Redis, client)


def _sentinel(url: str, config: RedisConfig, **extra: Any) -> aioredis.Redis:
    from redis.asyncio.sentinel import Sentinel

    parts, password, hosts = _hosts(url)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigurationError(
            f"{redact_url(url)!r} names no service: redis+sentinel://h:p/service"
        )
    service = path[0]
    db = int(path[1]) if len(path) > 1 else 0
    query = dict(urllib.parse.parse_qsl(parts.query))
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": config.conn_timeout}
    if "sentinel_password" in query:
        sentinel_kwargs["password"] = query["sentinel_password"]
    # Typed by recent redis-py (8.x), not by older ones: the ignore is for those.
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call, unused-ignore]
    client = sentinel.master_for(
        service,
        password=password,
        db=db,
        ssl=parts.scheme.startswith("rediss"),
        **_many_server_kwargs(config),
        **extra,
    )
    return cast(aioredis.Redis, client)


def _many_server_kwargs(config: RedisConfig) -> dict[str, Any]:
    """Connection settings for Cluster and Sentinel clients (they keep their own pools, so
    idle_timeout, max_lifetime and min_idle do not apply to them)."""
    return {
        "max_connections": config.max_size,
        "socket_connect_timeout": config.conn_timeout,
        "socket_timeout": config.socket_timeout,
        "socket_keepalive": True,
        "socket_keepalive_options": _KEEPALIVE,
        # More attempts than for one server: a failover takes seconds.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 6),
        **_COMMON,
    }


async def warm_up(client: aioredis.Redis, url: str, min_idle: int) -> None:
    """Check that Redis answers, and open ``min_idle`` connections ahead of need."""
    with translate_errors(f"cannot connect to Redis at {redact_url(url)}"):
        await client.ping()
        await open_idle(client, min_idle)


class translate_errors:
    """Turn redis-py's connection errors raised in a ``with`` block into
    ``RedisUnavailableError``. A plain (not async) context manager: it awaits nothing, and it
    sits on every enqueue's path, where a generator-based one costs several calls more."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or not isinstance(exc, REDIS_ERRORS):
            return
        if isinstance(exc, rexc.AuthenticationError):
            raise RedisUnavailableError(f"{self.what}: authentication failed ({exc})") from exc
        raise RedisUnavailableError(f"{self.what}: {exc}") from exc
