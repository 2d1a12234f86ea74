"""``WorkerEngine``: handlers + a worker + a client for one queue, and its builder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Generator
from dataclasses import replace
from typing import Any, Self, TypeVar

import redis.exceptions as rexc

from .client import ActivityClient
from .config import (
    DEFAULT_LEASE,
    DEFAULT_MAX_REDELIVERIES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_WORKERS,
    DEFAULT_QUEUE,
    DEFAULT_REDIS_URL,
    DEFAULT_SCHEDULE_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_TIMEOUT,
    BackoffPolicy,
    QueueSettings,
    RedisConfig,
    WorkerSettings,
)
from .connection import REDIS_ERRORS
from .durations import Duration
from .errors import ConfigurationError, RedisUnavailableError
from .handler import ActivityHandler, HandlerFunc, HandlerRegistry
from .metrics import MetricsSink, NoopMetrics
from .schedule import Schedule
from .schedules import ScheduleConflictError, ScheduleStore
from .stats import QueueStats
from .worker import Worker

__all__ = ["WorkerEngine", "WorkerEngineBuilder"]

log = logging.getLogger("runnerq.engine")

F = TypeVar("F", bound=HandlerFunc)

# Between tries to reach Redis at start-up: doubling from the first, up to the last.
_FIRST_RETRY = 0.1
_MAX_RETRY = 5.0


class WorkerEngine:
    """Runs the registered handlers for one queue.

    ``WorkerEngine(...)`` opens nothing; ``await engine.connect()`` (or
    ``await WorkerEngine.builder()...build()``) checks that Redis answers;
    ``await engine.start()`` runs until ``await engine.stop()``, SIGTERM or SIGINT.
    """

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        queue_name: str = DEFAULT_QUEUE,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        schedule_poll_interval: Duration = DEFAULT_SCHEDULE_POLL_INTERVAL,
        lease_duration: Duration = DEFAULT_LEASE,
        heartbeat_interval: Duration | None = None,
        shutdown_grace: Duration = DEFAULT_SHUTDOWN_GRACE,
        default_max_retries: int = DEFAULT_MAX_RETRIES,
        default_timeout: Duration = DEFAULT_TIMEOUT,
        prefetch: int | None = None,
        max_redeliveries: int = DEFAULT_MAX_REDELIVERIES,
        loop_stall_limit: Duration | None = None,
        backoff: BackoffPolicy | None = None,
        redis_config: RedisConfig | None = None,
        queue_settings: QueueSettings | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.redis_config = redis_config or RedisConfig()
        self.queue_settings = (
            replace(queue_settings, name=queue_name)
            if queue_settings is not None and queue_name != DEFAULT_QUEUE
            else queue_settings or QueueSettings(name=queue_name)
        )
        self.worker_settings = WorkerSettings(
            max_workers=max_workers,
            schedule_poll_interval=schedule_poll_interval,
            lease_duration=lease_duration,
            heartbeat_interval=heartbeat_interval,
            shutdown_grace=shutdown_grace,
            default_max_retries=default_max_retries,
            default_timeout=default_timeout,
            prefetch=prefetch,
            max_redeliveries=max_redeliveries,
            loop_stall_limit=loop_stall_limit,
            backoff=backoff or BackoffPolicy(),
        )
        # Left out, the heartbeat follows the lease (a third of it), in configure() too.
        self._heartbeat_given = heartbeat_interval is not None
        self.metrics: MetricsSink = metrics or NoopMetrics()
        self.registry = HandlerRegistry()
        self._schedules: dict[str, Schedule] = {}
        self._client: ActivityClient | None = None
        self._worker: Worker | None = None
        # Set by a stop request (also one made before start() runs); start() makes a new
        # one when it ends.
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._active = False  # start() is running

    @staticmethod
    def builder() -> WorkerEngineBuilder:
        return WorkerEngineBuilder()

    @property
    def queue_name(self) -> str:
        return self.queue_settings.name

    def configure(self, **changes: Any) -> None:
        """Change connection or worker settings before the engine connects (the CLI's
        ``--redis-url``, ``--queue`` and ``--max-workers`` use this). Worker settings are
        checked together: a new lease and heartbeat may be given in one call; a new lease
        alone also moves a heartbeat that was never given (a third of the lease)."""
        if self._client is not None:
            raise ConfigurationError("configure() must come before the engine connects")
        unknown = [
            name
            for name in changes
            if name not in ("redis_url", "metrics", "queue_name")
            and name not in WorkerSettings.__dataclass_fields__
        ]
        if unknown:
            raise ConfigurationError(f"unknown engine setting {unknown[0]!r}")
        worker = {k: v for k, v in changes.items() if k in WorkerSettings.__dataclass_fields__}
        heartbeat_given = self._heartbeat_given
        if "heartbeat_interval" in worker:
            heartbeat_given = worker["heartbeat_interval"] is not None
        elif "lease_duration" in worker and not heartbeat_given:
            worker["heartbeat_interval"] = None
        worker_settings = replace(self.worker_settings, **worker) if worker else None
        if "queue_name" in changes:
            self.queue_settings = replace(self.queue_settings, name=changes["queue_name"])
        if worker_settings is not None:
            self.worker_settings = worker_settings
            self._heartbeat_given = heartbeat_given
        if "redis_url" in changes:
            self.redis_url = changes["redis_url"]
        if "metrics" in changes:
            self.metrics = changes["metrics"]

    # -- handlers ----------------------------------------------------------------------

    def register_activity(
        self,
        activity_type: str | ActivityHandler,
        handler: ActivityHandler | HandlerFunc | None = None,
    ) -> None:
        """Register a handler object or async function for an activity type."""
        self.registry.register(activity_type, handler)

    def schedule(
        self,
        name: str,
        activity_type: str,
        *,
        cron: str | None = None,
        every: Duration | None = None,
        **options: Any,
    ) -> Schedule:
        """Declare a schedule: ``activity_type`` enqueued on a cron expression (5 fields, or 6
        with seconds first) or ``every`` so many seconds, written to Redis when the worker
        starts (unchanged, it keeps its progress). ``options``: the other ``Schedule`` fields
        (``timezone``, ``payload``, ``priority``, ``max_retries``, ``timeout``, ``metadata``,
        ``catch_up``, ``catch_up_limit``, ``starting_deadline``, ``concurrency``,
        ``suspended``). Fired by every worker of the queue and by the operator, once per
        tick."""
        if name in self._schedules:
            raise ConfigurationError(f"schedule {name!r} is already declared on this engine")
        declared = Schedule(name, activity_type, cron=cron, every=every, owner="code", **options)
        self._schedules[name] = declared
        return declared

    @property
    def schedules(self) -> dict[str, Schedule]:
        """The schedules declared in code (``schedule``), by name."""
        return dict(self._schedules)

    def activity(self, activity_type: str) -> Callable[[F], F]:
        """Decorator registering an async function ``(payload, ctx)`` as a handler."""

        def decorate(func: F) -> F:
            self.registry.register(activity_type, func)
            return func

        return decorate

    # -- connection --------------------------------------------------------------------

    @property
    def client(self) -> ActivityClient:
        if self._client is None:
            self._client = ActivityClient(
                self.redis_url,
                self.queue_settings.name,
                redis_config=self.redis_config,
                queue_settings=self.queue_settings,
                metrics=self.metrics,
            )
        return self._client

    async def connect(self) -> Self:
        """Check that Redis answers (raises ``RedisUnavailableError`` if not)."""
        await self.client.connect()
        return self

    def get_activity_executor(self) -> ActivityClient:
        """The client handlers and app code use to enqueue and await activities."""
        return self.client

    async def get_stats(self) -> QueueStats:
        return await self.client.get_stats()

    @property
    def worker(self) -> Worker | None:
        return self._worker

    # -- running -----------------------------------------------------------------------

    async def start(self, *, install_signal_handlers: bool = True) -> None:
        """Run until ``stop()`` or SIGTERM/SIGINT, then shut down gracefully.

        While Redis cannot be reached, it waits for it (backing off up to 5 s between tries)
        instead of failing; a refused password or a bad configuration still raises. A stop
        at any moment ends it promptly: before it connects (a ``stop()`` made before
        ``start()`` ran makes it return at once), while it connects or waits for Redis, and
        once it runs, when what the worker claimed is handed back.
        """
        if self._active:
            raise RuntimeError("this engine is already running")
        self._active = True
        self._stopped = asyncio.Event()
        stop_requested = self._stop_requested
        try:
            with self._signals(install_signal_handlers):
                worker = await self._start_worker(stop_requested)
                if worker is None:
                    log.info("stop requested before the worker started: not starting")
                    return
                try:
                    await stop_requested.wait()
                finally:
                    await worker.stop()
                    log.info("worker %s stopped", worker.worker_id)
        finally:
            self._stop_requested = asyncio.Event()
            self._active = False
            self._stopped.set()

    async def _start_worker(self, stop_requested: asyncio.Event) -> Worker | None:
        """Connect (waiting for Redis while it cannot be reached), load the scripts and the
        queue's configuration, and start the worker's loops; None if a stop came first."""
        delay = _FIRST_RETRY
        while not stop_requested.is_set():
            log.debug("connecting to Redis")
            try:
                if not await _unless_stopped(self.connect(), stop_requested):
                    return None
                worker = Worker(self.client, self.registry, self.worker_settings, self.metrics)
                log.debug("priming worker %s", worker.worker_id)
                if not await _unless_stopped(worker.prime(), stop_requested):
                    return None
            except RedisUnavailableError as exc:
                if _refused(exc):
                    raise
                log.warning("waiting for Redis (%s); trying again in %.2fs", exc, delay)
            except REDIS_ERRORS as exc:  # lost while priming: the same wait
                log.warning("waiting for Redis (%s); trying again in %.2fs", exc, delay)
            else:
                await self._declare_schedules()
                self._worker = worker
                worker.start()
                log.info(
                    "worker %s running queue %s with %d slots and handlers: %s",
                    worker.worker_id,
                    self.queue_name,
                    self.worker_settings.max_workers,
                    ", ".join(self.registry) or "(none)",
                )
                return worker
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop_requested.wait()
            delay = min(delay * 2, _MAX_RETRY)
        return None

    async def _declare_schedules(self) -> None:
        """Write the schedules declared in code; one that another owner (the operator, the
        API) has under the same name is left as it is, with an error logged."""
        if not self._schedules:
            return
        store = ScheduleStore(self.client.store)
        for declared in self._schedules.values():
            try:
                await store.upsert(declared)
            except ScheduleConflictError as exc:
                log.error("schedule %s not written: %s", declared.name, exc)

    @contextlib.contextmanager
    def _signals(self, install: bool) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        installed: list[tuple[signal.Signals, Any]] = []
        if install and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    previous = signal.getsignal(sig)
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append((sig, previous))
        try:
            yield
        finally:
            for sig, previous in installed:
                loop.remove_signal_handler(sig)
                if previous is not None:  # (asyncio leaves the default: a second SIGTERM
                    signal.signal(sig, previous)  # during the exit would kill the process)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s: shutting down gracefully", sig.name)
        self.request_stop()

    def request_stop(self) -> None:
        """Ask the engine to stop, without waiting; made before ``start()`` runs, the next
        ``start()`` returns at once."""
        self._stop_requested.set()

    async def stop(self) -> None:
        """Ask a running (or starting) engine to shut down, and wait until it has; made
        before ``start()`` runs, the next ``start()`` returns at once."""
        self.request_stop()
        if self._active:
            await self._stopped.wait()

    async def aclose(self) -> None:
        """Close the engine's connections (after it stopped)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _unless_stopped(step: Awaitable[Any], stop_requested: asyncio.Event) -> bool:
    """Run ``step`` unless a stop comes first (then cancel it): True if it finished."""
    task = asyncio.ensure_future(step)
    stop = asyncio.ensure_future(stop_requested.wait())
    try:
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    task.result()  # its error, if it failed
    return True


def _refused(exc: RedisUnavailableError) -> bool:
    """Redis answered but refused us (a wrong password): waiting will not help."""
    return isinstance(exc.__cause__, rexc.AuthenticationError | rexc.AuthorizationError)


class WorkerEngineBuilder:
    """Fluent construction; ``await builder.build()`` returns a connected engine."""

    def __init__(self) -> None:
        self._kwargs: dict[str, Any] = {}

    def _set(self, name: str, value: Any) -> Self:
        self._kwargs[name] = value
        return self

    def redis_url(self, url: str) -> Self:
        return self._set("redis_url", url)

    def queue_name(self, name: str) -> Self:
        return self._set("queue_name", name)

    def max_workers(self, n: int) -> Self:
        return self._set("max_workers", n)

    def schedule_poll_interval(self, seconds: Duration) -> Self:
        return self._set("schedule_poll_interval", seconds)

    def lease_duration(self, seconds: Duration) -> Self:
        return self._set("lease_duration", seconds)

    def heartbeat_interval(self, seconds: Duration) -> Self:
        return self._set("heartbeat_interval", seconds)

    def shutdown_grace(self, seconds: Duration) -> Self:
        return self._set("shutdown_grace", seconds)

    def default_max_retries(self, n: int) -> Self:
        return self._set("default_max_retries", n)

    def default_timeout(self, seconds: Duration) -> Self:
        return self._set("default_timeout", seconds)

    def prefetch(self, n: int) -> Self:
        return self._set("prefetch", n)

    def max_redeliveries(self, n: int) -> Self:
        return self._set("max_redeliveries", n)

    def loop_stall_limit(self, seconds: Duration) -> Self:
        return self._set("loop_stall_limit", seconds)

    def backoff(
        self, base: Duration = 1.0, factor: float = 2.0, cap: Duration = 300.0, jitter: float = 0.5
    ) -> Self:
        return self._set("backoff", BackoffPolicy(base, factor, cap, jitter))

    def redis_config(self, config: RedisConfig) -> Self:
        return self._set("redis_config", config)

    def queue_settings(self, settings: QueueSettings) -> Self:
        return self._set("queue_settings", settings)

    def metrics(self, sink: MetricsSink) -> Self:
        return self._set("metrics", sink)

    def engine(self) -> WorkerEngine:
        """The engine, not yet connected."""
        return WorkerEngine(**self._kwargs)

    async def build(self) -> WorkerEngine:
        """The engine, connected: fails with ``RedisUnavailableError`` if Redis is unreachable."""
        engine = self.engine()
        try:
            await engine.connect()
        except BaseException:
            await engine.aclose()
            raise
        return engine
