"""The writes both the reconciler and the autoscaler make for a queue: owned objects,
replicas, the Redis configuration, status and Events. Callers hold the queue's lock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from .conditions import Condition, merge_conditions, timestamp
from .kube import ApiError, KubeApi, object_path
from .manifests import build_configmap, build_deployment
from .metrics import OperatorMetrics
from .naming import deployment_name
from .redis_queues import RedisPools, write_queue_config
from .registry import QueueState
from .reports import queue_label, redis_back, redis_lost
from .settings import OperatorConfig
from .status import queue_status

__all__ = ["QueueWriter"]

log = logging.getLogger("runnerq_operator.actions")

Clock = Callable[[], float]


class QueueWriter:
    def __init__(
        self,
        api: KubeApi,
        pools: RedisPools,
        metrics: OperatorMetrics,
        config: OperatorConfig,
        clock: Clock = time.monotonic,
    ) -> None:
        self.api = api
        self.pools = pools
        self.metrics = metrics
        self.config = config
        self.clock = clock

    async def current_replicas(self, state: QueueState) -> int | None:
        """The Deployment's ``spec.replicas``, or None when it does not exist yet."""
        path = object_path("apps/v1", "deployments", state.namespace, deployment_name(state.name))
        found = await self.api.get(path)
        if found is None:
            return None
        return int(found.get("spec", {}).get("replicas", 1))

    async def apply_owned(self, state: QueueState, replicas: int) -> None:
        await self.api.apply(build_configmap(state.ref, state.spec))
        await self.apply_replicas(state, replicas)

    async def apply_replicas(self, state: QueueState, replicas: int) -> None:
        """Apply the whole Deployment with ``replicas``: the only place that sets them."""
        applied = await self.api.apply(build_deployment(state.ref, state.spec, replicas))
        state.replicas = replicas
        generation = applied.get("metadata", {}).get("generation")
        state.deployment_generation = int(generation) if generation is not None else None

    async def write_config(self, state: QueueState) -> None:
        client = self.pools.client(state.target)
        await write_queue_config(client, state.spec.queue, state.spec.queue_config)
        state.config_written = True

    def set_conditions(self, state: QueueState, *updates: Condition) -> None:
        state.conditions = merge_conditions(
            state.conditions, updates, state.generation, timestamp()
        )

    async def write_status(self, state: QueueState, *, force: bool = False) -> None:
        """Patch the status when it changed; a change of figures alone (depth, schedule
        progress) waits for ``status_interval`` since the last patch (unless ``force``)."""
        status = queue_status(
            name=state.name,
            queue=state.spec.queue,
            generation=state.generation,
            conditions=state.conditions,
            replicas=state.replicas,
            desired=state.desired,
            depth=state.depth,
            last_scale_time=state.last_scale_time,
            schedules=state.schedules,
            next_tick=state.next_tick,
        )
        if status == state.last_status and not force:
            return
        now = self.clock()
        depth_only = _without_figures(status) == _without_figures(state.last_status)
        if depth_only and not force and now - state.last_status_at < self.config.status_interval:
            return
        patch = dict(status)
        if state.depth_read_at is not None:  # not in ``status``: it alone is no change
            patch["lastPollTime"] = state.depth_read_at
        await self.api.patch_status(state.namespace, state.name, patch)
        state.last_status = status
        state.last_status_at = now

    def label(self, state: QueueState) -> str:
        return queue_label(state.spec.queue, state.namespace, state.name)

    async def redis_lost(self, state: QueueState, error: str) -> None:
        """Redis did not answer: the first time in an outage, one log line and one Event."""
        state.redis_error = error
        if state.redis_lost_at is not None:
            return
        state.redis_lost_at = self.clock()
        message = redis_lost(error, state.replicas, state.depth_read_at)
        log.warning("%s: %s", self.label(state), message)
        await self.event(state, "Warning", "RedisUnreachable", message)

    async def redis_back(self, state: QueueState) -> None:
        """Redis answers (again): after an outage, one log line and one Event."""
        state.redis_error = None
        if state.redis_lost_at is None:
            return
        message = redis_back(self.clock() - state.redis_lost_at)
        state.redis_lost_at = None
        log.info("%s: %s", self.label(state), message)
        await self.event(state, "Normal", "RedisReachable", message)

    async def event(self, state: QueueState, type_: str, reason: str, message: str) -> None:
        """Post an Event; failing to is logged, never raised (Events are best effort)."""
        try:
            await self.api.post_event(state.ref, type_, reason, message)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("cannot post event %s for %s/%s: %s", reason, *state.key, exc)


# Figures that change all the time: a change of these alone waits for status_interval.
_FIGURES = ("depth", "schedules", "nextTick")


def _without_figures(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in _FIGURES}
