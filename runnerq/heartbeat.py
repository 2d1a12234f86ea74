"""``Heartbeat``: extends the leases a worker holds, reaps expired ones, refreshes the queue's
configuration and the worker's registry entry (``presence``), and watches the connection;
and the stall guard's wiring (``stall_guard`` keeps the leases from its own thread while a
handler blocks the event loop)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .backoff import Backoff
from .client import ActivityClient
from .connection import drop_connections
from .metrics import ACTIVITY_LEASE_LOST, EVENT_LOOP_STALL, MetricsSink
from .metrics import REDIS_ERRORS as REDIS_ERRORS_METRIC
from .presence import beat_commands, worker_fields
from .stall_guard import StallGuard, StallPolicy
from .worker_state import WorkerState

__all__ = ["Heartbeat"]

log = logging.getLogger("runnerq.worker")


class Heartbeat:
    def __init__(
        self,
        state: WorkerState,
        client: ActivityClient,
        metrics: MetricsSink,
        worker_id: str = "",
    ) -> None:
        self._state = state
        self._worker_id = worker_id
        self._started_ms = int(time.time() * 1000)
        self._client = client
        self._store = client.store
        self._metrics = metrics
        self.stall_guard = self._new_stall_guard()

    async def run(self) -> None:
        state = self._state
        settings = state.settings
        backoff = Backoff()
        # The heartbeat doubles as the connection watchdog: connections carry no per-read
        # timeout (RedisConfig.socket_timeout), so one that went half-open (a frozen Redis, a
        # cut that sent no FIN/RST) would hang whatever waits on it.
        budget = max(2.0, min(settings.lease_duration / 2, 3 * settings.heartbeat_interval))
        while not state.stopping:
            try:
                async with asyncio.timeout(budget):
                    await self.beat()
            except TimeoutError as exc:
                log.warning("Redis did not answer a heartbeat within %.1fs: reconnecting", budget)
                await drop_connections(self._store.redis)
                self._metrics.inc_counter(REDIS_ERRORS_METRIC)
                await backoff.sleep("heartbeat", exc)
                continue
            except Exception as exc:
                self._metrics.inc_counter(REDIS_ERRORS_METRIC)
                await backoff.sleep("heartbeat", exc)
                continue
            backoff.reset()
            await asyncio.sleep(settings.heartbeat_interval)

    async def beat(self) -> None:
        state = self._state
        store = self._store
        held = list(state.held.items())
        sent_at = time.monotonic()
        lost = await store.heartbeat(state.settings.lease_duration, held)
        state.renewed_at = sent_at  # every lease held then and not lost runs from here
        for activity_id in lost:
            if activity_id in state.running:
                log.warning("lease of activity %s lost: stopping its handler", activity_id)
                self._metrics.inc_counter(ACTIVITY_LEASE_LOST)
            state.stop_activity(activity_id, "lease_lost")
        reaped = await store.reap()
        if reaped:
            log.info("returned %d activities with expired leases to the queue", reaped)
        state.read_defaults(await self._config_and_presence())
        state.redis_answered()

    async def _config_and_presence(self) -> dict[str, str]:
        """The queue's configuration, read in the same round trip as the worker's registry
        entry is written (docs/history.md)."""
        state = self._state
        store = self._store
        if not self._worker_id:
            return await store.get_config()
        fields = worker_fields(
            state.settings.max_workers,
            len(state.running),
            self._started_ms,
            int(time.time() * 1000),
        )
        async with store.redis.pipeline(transaction=False) as pipe:
            beat_commands(
                pipe, store.keys, self._worker_id, fields, state.settings.heartbeat_interval
            )
            pipe.hgetall(store.keys.config)
            replies = await pipe.execute()
        return {str(k): str(v) for k, v in replies[-1].items()}

    # -- a blocked event loop ----------------------------------------------------------

    def _new_stall_guard(self) -> StallGuard | None:
        settings = self._state.settings
        client = self._client
        limit = settings.loop_stall_limit
        if limit is None:
            limit = settings.default_timeout
        if limit == 0 or not client.owns_connection:
            return None  # off, or no URL to open the guard's own connection from
        policy = StallPolicy.for_worker(settings.lease_duration, settings.heartbeat_interval, limit)
        return StallGuard(
            url=client.redis_url,
            redis_config=client.redis_config,
            queue_settings=client.settings,
            policy=policy,
            held=lambda: list(self._state.held.items()),
            blocker=self._activity_of,
            on_lost=self._lost_during_stall,
            on_stall_end=self._stall_ended,
        )

    def _activity_of(self, task: asyncio.Task[Any] | None) -> str | None:
        for activity_id, entry in list(self._state.running.items()):
            if entry.task is task:
                return activity_id
        return None

    def _lost_during_stall(self, lost: list[str]) -> None:
        for activity_id in lost:
            self._state.stop_activity(activity_id, "lease_lost")
        if self.stall_guard is not None:
            self.stall_guard.lost.difference_update(lost)

    def _stall_ended(self, seconds: float) -> None:
        log.warning("event loop was blocked for %.1fs", seconds)
        self._metrics.observe_duration(EVENT_LOOP_STALL, seconds)
