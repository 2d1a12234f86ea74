"""Transport: the one module that reaches into redis-py's internals.

The rest of runnerq goes through redis-py's public client API (commands, pipelines, scripts,
pub/sub), and through this small interface where that costs too much on the hot path:

- ``lifecycle_pool``: the single-server pool, a ``BlockingConnectionPool`` subclass that
  recycles connections idle or alive for too long and skips the wait machinery when a free
  connection can be had at once (overrides ``get_connection``, ``ensure_connection`` and
  ``release``; reads ``can_get_connection``, ``get_available_connection``, ``_in_maintenance``).
- ``open_idle``: opens a pool's idle connections ahead of need.
- ``drop_connections``: closes every connection of a client, in use or not.
- ``raw_transport`` -> ``RawTransport``: commands packed by runnerq written straight on a
  pooled connection (``send_packed_command``, ``read_response``): ``stream`` for the bulk
  enqueue, ``keep`` for the ``KeptConnection`` a worker waits for work on.

Written for redis-py 5.0.1 and later, tested with 8.2; ``pyproject.toml`` caps it below the
next major version, which is to be tried against this module first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

__all__ = [
    "REDIS_FAILURES",
    "KeptConnection",
    "RawTransport",
    "StreamBroken",
    "close_subscription",
    "drop_connections",
    "lifecycle_pool",
    "open_idle",
    "raw_transport",
    "subscribe_confirmed",
]

# What Redis can do to a call part way (a lost connection, an error reply such as OOM);
# anything else is a bug, raised as it is.
REDIS_FAILURES = (RedisError, OSError)

T = TypeVar("T")


class _LifecyclePool(BlockingConnectionPool):
    """A blocking pool that also closes connections idle or alive for too long, and hands
    out a free connection without the wait machinery (a condition, a timeout and metrics
    hooks: about 0.1 ms per command on an idle machine) when one can be had at once."""

    idle_timeout: float | None = None
    max_lifetime: float | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._can_take_now():  # what the wait would give at once, without the wait
            connection = self.get_available_connection()  # type: ignore[no-untyped-call]
            try:
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _can_take_now(self) -> bool:
        if getattr(self, "_in_maintenance", False):
            return False  # redis-py locks the pool while it moves connections then
        return bool(self.can_get_connection())

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        now = time.monotonic()
        born: float | None = getattr(connection, "_runnerq_born", None)
        last: float | None = getattr(connection, "_runnerq_last", None)
        stale = (
            born is not None and self.max_lifetime is not None and now - born > self.max_lifetime
        ) or (last is not None and self.idle_timeout is not None and now - last > self.idle_timeout)
        if stale:
            await connection.disconnect()
            born = None
        await super().ensure_connection(connection)
        if born is None:
            connection._runnerq_born = now  # type: ignore[attr-defined]

    async def release(self, connection: AbstractConnection) -> None:
        mark_used(connection)
        await super().release(connection)


def mark_used(connection: AbstractConnection) -> None:
    """Note that ``connection`` just did its work (a connection kept out of the pool for
    long is not idle while it is in use: ``ensure_connection`` must not recycle it)."""
    connection._runnerq_last = time.monotonic()  # type: ignore[attr-defined]


def lifecycle_pool(
    url: str, *, idle_timeout: float | None, max_lifetime: float | None, **kwargs: Any
) -> BlockingConnectionPool:
    """A blocking pool for ``url`` (``kwargs`` as redis-py's ``from_url`` takes them) that
    closes and replaces a connection idle for longer than ``idle_timeout`` or older than
    ``max_lifetime`` (seconds; ``None``: no limit) before its next use. Raises ``ValueError``
    for a bad URL, as redis-py does."""
    pool = _LifecyclePool.from_url(url, **kwargs)
    pool.idle_timeout = idle_timeout
    pool.max_lifetime = max_lifetime
    return pool


async def open_idle(client: aioredis.Redis, count: int) -> None:
    """Open ``count`` connections of the client's pool ahead of need (none for Cluster and
    Sentinel clients, which manage their own connections)."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, _LifecyclePool):
        return
    held = [await pool.get_connection() for _ in range(count)]
    for conn in held:
        await pool.release(conn)


async def drop_connections(client: aioredis.Redis) -> None:
    """Close every connection of the client's pool, in use or not: whatever waits on one
    fails with a connection error and its caller reconnects. For a connection that stopped
    answering (half-open), which no read timeout would otherwise end."""
    try:
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            await pool.disconnect(inuse_connections=True)
        else:  # Redis Cluster: one pool per node
            for node in client.get_nodes():  # type: ignore[attr-defined]
                await node.disconnect()
    except Exception:  # pragma: no cover - best effort on a connection already broken
        pass


class StreamBroken(Exception):
    """``RawTransport.stream`` failed part way (the cause is ``__cause__``): ``sent`` holds the
    items whose commands were written (a failed write may still have got there), ``replies`` the
    replies read by then, in order."""

    def __init__(self, sent: list[Any], replies: list[Any]) -> None:
        super().__init__("the stream broke")
        self.sent = sent
        self.replies = replies


class RawTransport:
    """Commands packed by runnerq, written straight on connections of one client's pool: no
    command parsing, no automatic resend after a connection error (a call whose reply was
    lost may have run; the caller decides)."""

    __slots__ = ("_pool",)

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def stream(
        self, items: Iterable[T], pack: Callable[[T], bytes]
    ) -> tuple[list[T], list[Any]]:
        """Write each item's command (``pack(item)``, made as ``items`` gives the item) on one
        connection, then read the replies; returns the items written and their replies, a
        ``NoScriptError`` for a call that found no script. Any other Redis failure raises
        ``StreamBroken`` with what was written and read by then; the connection is then
        closed, never reused (replies may still be on their way)."""
        sent: list[T] = []
        replies: list[Any] = []
        pool = self._pool
        try:
            conn = await pool.get_connection()
        except REDIS_FAILURES as exc:
            raise StreamBroken(sent, replies) from exc
        try:
            for item in items:
                command = pack(item)
                sent.append(item)  # before the write: a failed write may still have got there
                await conn.send_packed_command(command, check_health=False)
            for _ in sent:
                try:
                    replies.append(await conn.read_response())
                except NoScriptError as exc:
                    replies.append(exc)
        except BaseException as exc:
            await conn.disconnect()  # replies may still be on their way: never reuse it
            if isinstance(exc, REDIS_FAILURES):
                raise StreamBroken(sent, replies) from exc
            raise
        finally:
            await pool.release(conn)
        return sent, replies

    def keep(self) -> KeptConnection:
        """A connection to keep between calls (taken from the pool at its first call)."""
        return KeptConnection(self._pool)


class KeptConnection:
    """A pooled connection one caller keeps between calls (a worker's wait for work), so that
    a call pays for no pool or pipeline bookkeeping; ``release`` gives it back."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._conn: Any = None

    async def call_pair(self, first: tuple[Any, ...], second: tuple[Any, ...]) -> tuple[Any, Any]:
        """Write both commands at once and read both replies: Redis runs the second as soon
        as the first returns, with no network crossing in between. A ``NoScriptError`` from
        the second is raised with the connection kept (both replies were read); any other
        error closes the connection (a reply may still be on its way, or the second command
        may yet run) and gives it back: the next call takes another one."""
        pool = self._pool
        conn = self._conn
        if conn is None:
            conn = self._conn = await pool.get_connection()
        else:
            await pool.ensure_connection(conn)  # reconnects one that was dropped
        packed = conn.pack_commands([first, second])
        try:
            await conn.send_packed_command(packed, check_health=False)
            first_reply = await conn.read_response()
            second_reply = await conn.read_response()
        except NoScriptError:
            mark_used(conn)  # both replies were read: the connection is fine
            raise
        except BaseException:
            # A reply may still be on its way (or the second command may run): never reuse it.
            self._conn = None
            await conn.disconnect()
            await pool.release(conn)
            raise
        mark_used(conn)
        return first_reply, second_reply

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)


def raw_transport(client: aioredis.Redis) -> RawTransport | None:
    """Raw commands for a single-server client (``None`` for a client with no one pool, such
    as Redis Cluster's, where redis-py sends no raw commands to a node)."""
    pool = getattr(client, "connection_pool", None)
    return None if pool is None else RawTransport(pool)


# -- pub/sub that says when it lost its connection ----------------------------------------

_NO_RETRY = Retry(NoBackoff(), 0)
_KEPT_RETRY = "_runnerq_kept_retry"


async def subscribe_confirmed(pubsub: Any, channel: str, timeout: float) -> None:
    """Subscribe ``pubsub`` to ``channel`` and wait until Redis confirms it.

    From then on a lost connection raises at the next read instead of being made again
    behind the caller's back: redis-py would reconnect and subscribe again on its own, and
    whatever was published in between would be lost without the caller knowing to look
    again. (Close it with ``close_subscription``, which gives the connection its retries
    back before the pool has it again.)"""
    await pubsub.subscribe(channel)
    conn = pubsub.connection
    if conn is not None and not hasattr(conn, _KEPT_RETRY):
        setattr(conn, _KEPT_RETRY, conn.retry)
        conn.retry = _NO_RETRY
    async with asyncio.timeout(timeout):
        while True:
            message = await pubsub.get_message(timeout=timeout)
            if message is not None and message.get("type") == "subscribe":
                return


async def close_subscription(pubsub: Any) -> None:
    conn = pubsub.connection
    if conn is not None and hasattr(conn, _KEPT_RETRY):
        conn.retry = getattr(conn, _KEPT_RETRY)
        delattr(conn, _KEPT_RETRY)
    await pubsub.aclose()
