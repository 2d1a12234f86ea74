"""``ActivityClient``: enqueue activities and await their results, with no worker attached.

Creating one is cheap (no connection is opened until first use), so app code anywhere in a
cluster can make one per process and share it. ``WorkerEngine.get_activity_executor()``
returns the engine's own client, so handlers can enqueue follow-up activities.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Self

import redis.asyncio as aioredis

from .batching import Coalescer
from .config import DEFAULT_QUEUE, DEFAULT_REDIS_URL, QueueSettings, RedisConfig
from .connection import REDIS_ERRORS, connect, translate_errors, warm_up
from .durations import Duration, seconds
from .errors import BulkEnqueueError, BulkEnqueueUnavailableError, ConfigurationError
from .future import ActivityFuture
from .history import (
    ActivityEvent,
    Progress,
    Throughput,
    compose_events,
    last_progress,
    throughput,
)
from .limits import Limits, LimitStats
from .metrics import ACTIVITY_ENQUEUED, MetricsSink, NoopMetrics
from .options import ActivityOption
from .prepare import NO_OPTIONS, ActivityIds, BulkEntries, Entry, prepare
from .presence import WorkerInfo, list_workers, register_queue
from .priority import ActivityPriority
from .record import DeadLetterEntry
from .results import ResultListener
from .schedules import ScheduleStore
from .scripts import Scripts
from .stats import QueueStats
from .store import EnqueueInterrupted, EnqueueItem, QueueStore

__all__ = ["ActivityBuilder", "ActivityClient"]

_ENQUEUE_BATCH = 1000


class ActivityClient:
    """Enqueue into one queue, await results, read stats, manage the dead-letter queue."""

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        queue_name: str = DEFAULT_QUEUE,
        *,
        redis_config: RedisConfig | None = None,
        queue_settings: QueueSettings | None = None,
        metrics: MetricsSink | None = None,
        redis: aioredis.Redis | None = None,
    ) -> None:
        self.settings = queue_settings or QueueSettings(name=queue_name)
        self.redis_url = redis_url
        self.redis_config = redis_config or RedisConfig()
        self._owns_redis = redis is None
        self.redis = redis if redis is not None else connect(redis_url, self.redis_config)
        self.store = QueueStore(self.redis, self.settings, Scripts(self.redis))
        self._schedules: ScheduleStore | None = None
        self.metrics: MetricsSink = metrics or NoopMetrics()
        self._results = ResultListener(self.store, self.redis_config.conn_timeout)
        self._ids = ActivityIds()
        self._enqueuer: Coalescer[EnqueueItem, tuple[str, bool]] = Coalescer(
            self._enqueue_batch, _ENQUEUE_BATCH
        )
        # The queue is in the registry of queue names (once per client: ``_register``).
        self._registered = False

    @classmethod
    def from_url(cls, url: str = DEFAULT_REDIS_URL, queue: str = DEFAULT_QUEUE, **kw: Any) -> Self:
        return cls(url, queue, **kw)

    @property
    def queue_name(self) -> str:
        return self.settings.name

    @property
    def owns_connection(self) -> bool:
        """True when this client opened its Redis connection from ``redis_url`` (False when it
        was handed a client): then ``redis_url`` and ``redis_config`` describe the connection."""
        return self._owns_redis

    async def connect(self) -> None:
        """Check that Redis answers and open the pool's idle connections."""
        await warm_up(self.redis, self.redis_url, self.redis_config.min_idle)
        await self._register()

    async def _register(self) -> None:
        """Add the queue to the registry of queue names (``runnerq:queues``), once per client:
        on connect or first enqueue. A plain command outside the queue's hash tag. Failing is
        left to what comes next (the enqueue raises its own error): tried again next time."""
        if self._registered:
            return
        self._registered = True
        try:
            await register_queue(self.redis, self.settings.name)
        except REDIS_ERRORS:
            self._registered = False
        except BaseException:
            self._registered = False
            raise

    async def aclose(self) -> None:
        await self._enqueuer.aclose()
        await self._results.aclose()
        if self._owns_redis:
            await self.redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- enqueueing --------------------------------------------------------------------

    @property
    def schedules(self) -> ScheduleStore:
        """The queue's schedules: ``list``, ``get``, ``upsert``, ``remove``, ``suspend``,
        ``resume`` and ``trigger`` (run now), from any process."""
        if self._schedules is None:
            self._schedules = ScheduleStore(self.store)
        return self._schedules

    def activity(self, activity_type: str) -> ActivityBuilder:
        """Start a fluent enqueue: ``client.activity("t").payload({...}).execute()``."""
        return ActivityBuilder(self, activity_type)

    async def execute_activity(
        self, activity_type: str, payload: Any = None, options: ActivityOption | None = None
    ) -> ActivityFuture:
        """Enqueue one activity. Concurrent calls share round trips to Redis."""
        item = prepare(
            self._ids,
            activity_type,
            payload,
            options or NO_OPTIONS,
            self.settings.max_payload_bytes,
        )
        if not self._registered:
            await self._register()
        with translate_errors("cannot enqueue"):
            activity_id, created = await self._enqueuer.submit(item)
        return ActivityFuture(self, activity_id, created)

    async def enqueue_many(self, activities: Iterable[Entry]) -> list[ActivityFuture]:
        """Enqueue many activities in as few round trips as possible (bulk enqueue).

        Each entry is ``(type, payload)`` or ``(type, payload, options)``. Every entry is
        checked and its payload encoded before anything is sent: a bad one raises and
        enqueues none. If Redis fails part way, ``BulkEnqueueError`` says which entries went
        in, which may have, and which were never sent."""
        entries = BulkEntries(self._ids, activities, self.settings.max_payload_bytes)
        if not len(entries):
            return []
        if not self._registered:
            await self._register()
        # In order (FIFO within a priority): streamed on one connection, never batches on
        # parallel connections, which could reach Redis out of order.
        try:
            with translate_errors("cannot enqueue"):
                done = await self.store.enqueue_batches(entries.batches(_ENQUEUE_BATCH))
        except EnqueueInterrupted as exc:
            applied = self._futures(exc.done)
            unsent = len(entries) - len(applied) - len(exc.unknown)
            cause = exc.__cause__
            kind = (
                BulkEnqueueUnavailableError if isinstance(cause, REDIS_ERRORS) else BulkEnqueueError
            )
            raise kind(f"cannot enqueue: {cause}", applied, exc.unknown, unsent) from cause
        return self._futures(done)

    def _futures(self, done: list[list[tuple[str, bool]]]) -> list[ActivityFuture]:
        futures = [ActivityFuture(self, i, created) for batch in done for i, created in batch]
        self.metrics.inc_counter(ACTIVITY_ENQUEUED, sum(1 for f in futures if f.created))
        return futures

    async def _enqueue_batch(self, items: Sequence[EnqueueItem]) -> list[tuple[str, bool]]:
        out = await self.store.enqueue(items)
        self.metrics.inc_counter(ACTIVITY_ENQUEUED, sum(1 for _, created in out if created))
        return out

    # -- following up ------------------------------------------------------------------

    def future(self, activity_id: str) -> ActivityFuture:
        """A handle for an activity enqueued elsewhere (by id)."""
        return ActivityFuture(self, activity_id)

    async def cancel(self, activity_id: str) -> bool:
        """Cancel a pending, scheduled or running activity; False if it already finished."""
        with translate_errors("cannot cancel"):
            return await self.store.cancel(activity_id) != 0

    async def get_events(self, activity_id: str) -> list[ActivityEvent]:
        """The activity's history, oldest first (docs/history.md): enqueued (while its record
        is kept), claimed, failed, retry, lease_lost, throttled, released, requeued, and how
        it ended; the last ``HISTORY_CAP`` stored events. Empty for an unknown id."""
        with translate_errors("cannot read the activity's events"):
            raws, token, record, result, completed_ms = await self.store.events(activity_id)
        return compose_events(raws, token, record, result, completed_ms)

    async def get_progress(self, activity_id: str) -> Progress | None:
        """What the activity's handler last reported (``ctx.progress``): the running
        attempt's, else the last attempt's (kept with its history); None if none."""
        with translate_errors("cannot read the activity's progress"):
            return last_progress(*await self.store.progress(activity_id))

    async def get_throughput(self, minutes: int = 60) -> Throughput:
        """Completed and failed attempts over the last hour and day, and per minute for the
        last ``minutes`` (at most a day), from the queue's per-minute counts."""
        with translate_errors("cannot read the queue's throughput"):
            raw, now_minute = await self.store.minutes()
        return throughput(raw, now_minute, max(1, min(minutes, 1440)))

    async def list_workers(self) -> list[WorkerInfo]:
        """The queue's live workers (registry entries refreshed by their heartbeats)."""
        with translate_errors("cannot read the queue's workers"):
            return await list_workers(self.redis, self.settings.name)

    async def get_stats(self) -> QueueStats:
        with translate_errors("cannot read queue stats"):
            return await self.store.stats()

    # -- dead-letter queue -------------------------------------------------------------

    async def dead_letters(self, offset: int = 0, limit: int = 100) -> list[DeadLetterEntry]:
        with translate_errors("cannot read the dead-letter queue"):
            return await self.store.dead_letters(offset, limit)

    async def requeue_dead_letter(self, activity_id: str) -> bool:
        with translate_errors("cannot requeue"):
            return await self.store.requeue(activity_id)

    async def requeue_all_dead_letters(self) -> int:
        count = 0
        while True:
            entries = await self.dead_letters(0, 500)
            moved = 0
            for entry in entries:
                if await self.requeue_dead_letter(entry.id):
                    moved += 1
            count += moved
            if moved == 0:
                return count

    async def purge_dead_letters(self) -> int:
        with translate_errors("cannot purge the dead-letter queue"):
            return await self.store.purge_dead()

    # -- queue configuration -----------------------------------------------------------

    async def get_queue_config(self) -> dict[str, str]:
        with translate_errors("cannot read the queue configuration"):
            return await self.store.get_config()

    async def set_queue_config(
        self,
        *,
        paused: bool | None = None,
        max_retries: int | None = None,
        timeout: Duration | None = None,
    ) -> None:
        """Set fields of the queue's configuration hash (the operator's job, usually);
        ``timeout`` in seconds or as a ``timedelta``."""
        values: dict[str, str | int | float | bool | None] = {}
        if paused is not None:
            values["paused"] = paused
        if max_retries is not None:
            values["max_retries"] = max_retries
        if timeout is not None:
            timeout_s = seconds(timeout)
            if timeout_s is None or timeout_s <= 0:
                raise ConfigurationError(
                    f"timeout must be a number of seconds or a timedelta > 0, not {timeout!r}"
                )
            values["timeout"] = timeout_s
        with translate_errors("cannot write the queue configuration"):
            await self.store.set_config(values)

    # -- limits (docs/limits.md) -------------------------------------------------------

    async def get_limits(self) -> Limits:
        """The queue's rate and concurrency limits (``Limits()``: none)."""
        with translate_errors("cannot read the queue's limits"):
            return await self.store.get_limits()

    async def set_limits(self, limits: Limits | None) -> None:
        """Replace the queue's limits (``None``: none); every worker's next claim applies
        them. Bad limits raise ``ConfigurationError`` before anything is written."""
        with translate_errors("cannot write the queue's limits"):
            await self.store.set_limits(limits)

    async def get_limit_stats(self) -> LimitStats:
        """What the limits hold back: throttled counts, slots in use, held types, eligible."""
        with translate_errors("cannot read the queue's limit stats"):
            return await self.store.limit_stats()


class ActivityBuilder:
    """Fluent options for one activity; ``execute()`` enqueues it."""

    __slots__ = ("_activity_type", "_client", "_options", "_payload")

    def __init__(self, client: ActivityClient, activity_type: str) -> None:
        self._client = client
        self._activity_type = activity_type
        self._payload: Any = None
        self._options: dict[str, Any] = {}

    def payload(self, payload: Any) -> Self:
        self._payload = payload
        return self

    def priority(self, priority: ActivityPriority | str) -> Self:
        self._options["priority"] = ActivityPriority.parse(priority)
        return self

    def max_retries(self, retries: int) -> Self:
        self._options["max_retries"] = retries
        return self

    def timeout(self, seconds: Duration) -> Self:
        """Seconds or a ``timedelta``."""
        self._options["timeout"] = seconds
        return self

    def delay(self, seconds: Duration) -> Self:
        """Seconds or a ``timedelta``."""
        self._options["delay"] = seconds
        return self

    def run_at(self, when: dt.datetime) -> Self:
        self._options["run_at"] = when
        return self

    def metadata(self, metadata: dict[str, Any]) -> Self:
        self._options["metadata"] = dict(metadata)
        return self

    def idempotency_key(self, key: str) -> Self:
        self._options["idempotency_key"] = key
        return self

    def limit_key(self, key: str) -> Self:
        """What the queue's per-key limits count this activity against (docs/limits.md)."""
        self._options["limit_key"] = key
        return self

    def options(self) -> ActivityOption:
        return ActivityOption(**self._options)

    async def execute(self) -> ActivityFuture:
        return await self._client.execute_activity(
            self._activity_type, self._payload, self.options()
        )
