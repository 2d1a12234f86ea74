"""The scaling loop: every queue is polled on its own interval, on a grid of multiples of that
interval (so queues with equal intervals fall due together); the queues due at the same
moment are read together, one pipelined round trip per Redis server, then each queue's
replicas are decided (``scaling``), applied and reported.

Only the queues this operator serves are polled (``QueueRegistry.served``): with kopf
peering, none while kopf pauses the operator. Every write checks that under the queue's
lock, which ``Reconciler.release`` takes before it returns, so a released queue is written
no more.

Redis unreachable: the replicas stay as they are, ``Ready`` and ``RedisReachable`` turn
False with the error, one log line and one Warning Event per outage, and the queue is polled
on at its interval: a failed read costs one connection attempt per Redis server, so there is
nothing to save by backing off, and the poll after Redis returns notices it.

Each change of replicas is logged in one line (from, to, why, the queue) with its Event; a
poll that changes nothing logs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from itertools import groupby
from typing import Any

import aiohttp

from runnerq.errors import RedisUnavailableError

from .actions import QueueWriter
from .conditions import READY, REDIS_REACHABLE, SCALING, Condition, timestamp
from .kube import ApiError
from .metrics import OperatorMetrics
from .naming import selector_string
from .redis_queues import DepthQuery, RedisPools, lease_tokens, read_depths
from .redis_target import RedisTarget
from .registry import QueueRegistry, QueueState
from .reports import limits_words, redis_lost, scale_reason, settle_time, stabilizing
from .scaling import (
    DELETION_COST_ANNOTATION,
    Decision,
    Depth,
    Stabilizer,
    deletion_costs,
    lease_holders,
    recommend,
    scale_down_floor,
)
from .settings import OperatorConfig

__all__ = ["Autoscaler", "next_tick"]

log = logging.getLogger("runnerq_operator.autoscaler")


class Autoscaler:
    def __init__(
        self,
        registry: QueueRegistry,
        writer: QueueWriter,
        pools: RedisPools,
        metrics: OperatorMetrics,
        config: OperatorConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.writer = writer
        self.pools = pools
        self.metrics = metrics
        self.config = config
        self.clock = clock
        self._api_slots = asyncio.Semaphore(config.api_concurrency)

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            now = self.clock()
            served = self.registry.served()
            due = [s for s in served if s.next_poll <= now + self.config.coalesce]
            if due:
                started = time.perf_counter()
                await self.poll(due)
                self.metrics.poll_seconds.observe(time.perf_counter() - started)
                await self.pools.discard(self.registry.targets())
            self.metrics.queues.set(len(self.registry.served()))
            await self._sleep_until_next()

    async def _sleep_until_next(self) -> None:
        upcoming = [s.next_poll for s in self.registry.served()]
        delay = max(0.0, min(upcoming) - self.clock()) if upcoming else 3600.0
        self.registry.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.registry.changed.wait(), timeout=delay)

    async def poll(self, states: list[QueueState]) -> None:
        """One round: read the depth of ``states`` (one pipeline per Redis), then scale."""

        def target_key(s: QueueState) -> str:
            return repr(s.target)

        groups = [
            (group[0].target, group)
            for _, items in groupby(sorted(states, key=target_key), key=target_key)
            if (group := list(items))
        ]
        await asyncio.gather(*(self._poll_target(t, g) for t, g in groups))

    async def _poll_target(self, target: RedisTarget, states: list[QueueState]) -> None:
        now_ms = int(time.time() * 1000)
        queries = [DepthQuery(s.spec.queue, s.spec.scaling.scheduled_within) for s in states]
        try:
            depths = await read_depths(self.pools.client(target), queries, now_ms)
        except RedisUnavailableError as exc:
            self.metrics.errors.labels("redis").inc()
            await asyncio.gather(
                *(self._guarded(s, self._unreachable(s, str(exc))) for s in states)
            )
            return
        finally:
            self.metrics.redis_round_trips.inc()
        self.metrics.polls.inc(len(states))
        await asyncio.gather(
            *(self._guarded(s, self._scale(s, d)) for s, d in zip(states, depths, strict=True))
        )

    async def _guarded(self, state: QueueState, work: Coroutine[Any, Any, None]) -> None:
        """Run one queue's work; a Kubernetes error costs that queue a backoff, no more."""
        async with self._api_slots:
            try:
                await work
            except ApiError as exc:
                self.metrics.errors.labels("kubernetes").inc()
                if exc.status == 404:  # the ActivityQueue is gone
                    self.registry.remove(state.key)
                    return
                log.warning("queue %s/%s: Kubernetes API error: %s", *state.key, exc)
                state.next_poll = self.clock() + state.spec.scaling.poll_interval
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.metrics.errors.labels("kubernetes").inc()
                log.warning("queue %s/%s: Kubernetes API unreachable: %s", *state.key, exc)
                state.next_poll = self.clock() + state.spec.scaling.poll_interval

    async def _unreachable(self, state: QueueState, error: str) -> None:
        async with state.lock:
            if not self.registry.serves(state.key):
                return
            interval = state.spec.scaling.poll_interval
            state.next_poll = next_tick(self.clock() + self.config.coalesce, interval)
            state.failures += 1
            await self.writer.redis_lost(state, error)
            message = redis_lost(error, state.replicas, state.depth_read_at)
            self.writer.set_conditions(
                state,
                Condition(READY, "False", "RedisUnreachable", message),
                Condition(REDIS_REACHABLE, "False", "ConnectionFailed", error),
                Condition(
                    SCALING,
                    "False",
                    "RedisUnreachable",
                    f"keeping {state.replicas} replicas; trying Redis every {interval:g}s",
                ),
            )
            await self.writer.write_status(state)

    async def _scale(self, state: QueueState, depth: Depth) -> None:
        async with state.lock:
            if not self.registry.serves(state.key):
                return
            spec = state.spec
            now = self.clock()
            state.next_poll = next_tick(now + self.config.coalesce, spec.scaling.poll_interval)
            state.failures = 0
            state.depth = depth
            state.depth_read_at = timestamp()
            self._export_depth(state, depth)
            if state.redis_error is not None:
                await self.writer.redis_back(state)
                self.writer.set_conditions(
                    state, Condition(READY, "True", "Reconciled", "Redis answers again")
                )
            if not state.config_written:
                await self.writer.write_config(state)
            if state.replicas is None:
                state.replicas = await self.writer.current_replicas(state) or 0
            if spec.scaling.mode == "External":
                state.desired = state.replicas
                self.writer.set_conditions(
                    state, Condition(REDIS_REACHABLE, "True", "Connected", "depth read")
                )
                await self.writer.write_status(state)
                return
            current = state.replicas
            if state.stabilizer is None:
                state.stabilizer = Stabilizer(now, current)
            decision = recommend(depth, spec.scaling, spec.worker.concurrency)
            stabilized = state.stabilizer.stabilize(
                now,
                decision.replicas,
                current,
                spec.scaling.scale_up_window,
                spec.scaling.scale_down_window,
            )
            target = stabilized
            if stabilized < current and depth.in_flight > 0:
                target = scale_down_floor(current, stabilized, await self._busy_pods(state))
            state.desired = decision.replicas
            self.metrics.desired.labels(state.namespace, state.name, spec.queue).set(
                decision.replicas
            )
            if target != current:
                await self.writer.apply_replicas(state, target)
                state.last_scale_time = timestamp()
                direction = "up" if target > current else "down"
                self.metrics.scale_decisions.labels(direction).inc()
                why = scale_reason(current, target, decision, depth, spec.scaling)
                log.info("%s: scaled %s %s", self.writer.label(state), direction, why)
                await self.writer.event(
                    state, "Normal", "ScaledUp" if direction == "up" else "ScaledDown", why
                )
            self.writer.set_conditions(
                state,
                Condition(REDIS_REACHABLE, "True", "Connected", "depth read"),
                self._scaling_condition(state, now, decision, target, stabilized),
            )
            await self.writer.write_status(state)

    def _scaling_condition(
        self, state: QueueState, now: float, decision: Decision, target: int, stabilized: int
    ) -> Condition:
        scaling = state.spec.scaling
        wanted = decision.replicas
        if target == stabilized and stabilized != wanted and state.stabilizer is not None:
            settles = state.stabilizer.settles_at(
                wanted, stabilized, scaling.scale_up_window, scaling.scale_down_window
            )
            when = None if settles is None else settle_time(time.time(), now, settles)
            return Condition(
                SCALING, "True", "Stabilizing", stabilizing(wanted, stabilized, when, scaling)
            )
        return _scaling_condition(decision, target, stabilized, wanted, state.depth)

    async def _busy_pods(self, state: QueueState) -> int | None:
        """How many of the Deployment's pods hold leases, after marking them with a
        ``pod-deletion-cost`` so the ReplicaSet removes idle pods first; None if unknown."""
        try:
            tokens = await lease_tokens(self.pools.client(state.target), state.spec.queue)
            pods = await self.writer.api.list(
                "v1", "pods", state.namespace, selector_string(state.name)
            )
        except (RedisUnavailableError, ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("queue %s/%s: cannot tell busy pods: %s", *state.key, exc)
            return None
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        costs = deletion_costs([p["metadata"]["name"] for p in live], lease_holders(tokens))
        for pod in live:
            meta = pod["metadata"]
            cost = str(costs[meta["name"]])
            if (meta.get("annotations") or {}).get(DELETION_COST_ANNOTATION, "0") != cost:
                path = f"/api/v1/namespaces/{state.namespace}/pods/{meta['name']}"
                await self.writer.api.merge_patch(
                    path, {"metadata": {"annotations": {DELETION_COST_ANNOTATION: cost}}}
                )
        return sum(1 for c in costs.values() if c > 0)

    def _export_depth(self, state: QueueState, depth: Depth) -> None:
        for name, value in (
            ("ready", depth.ready),
            ("in_flight", depth.in_flight),
            ("scheduled", depth.scheduled),
            ("due_soon", depth.due_soon),
            ("dead_letter", depth.dead_letter),
        ):
            self.metrics.depth.labels(state.namespace, state.name, state.spec.queue, name).set(
                value
            )
        queue_labels = (state.namespace, state.name, state.spec.queue)
        self.metrics.held_keys.labels(*queue_labels).set(depth.held_keys)
        labels = (*queue_labels, "eligible")
        if depth.eligible is not None:  # only while the queue has a rate or concurrency
            self.metrics.depth.labels(*labels).set(depth.eligible)
        else:
            with contextlib.suppress(KeyError):
                self.metrics.depth.remove(*labels)


def next_tick(now: float, interval: float) -> float:
    """The first multiple of ``interval`` after ``now``: queues with the same interval share
    their ticks (whenever they were created), so they are read in the same round trip."""
    return (math.floor(now / interval) + 1) * interval


def _scaling_condition(
    decision: Decision, target: int, stabilized: int, wanted: int, depth: Depth | None
) -> Condition:
    limited_by = decision.limited_by
    if target != stabilized:
        return Condition(
            SCALING, "True", "BusyPods", f"holding {target} replicas: pods still run activities"
        )
    if stabilized != wanted:
        return Condition(
            SCALING,
            "True",
            "Stabilizing",
            f"{wanted} replicas recommended; {stabilized} within the stabilization window",
        )
    if limited_by == "max":
        return Condition(SCALING, "True", "AtMaxReplicas", f"limited to maxReplicas ({target})")
    if limited_by == "limits" and depth is not None:
        return Condition(
            SCALING,
            "True",
            "LimitedByQueueLimits",
            f"{target} replicas: the queue's limits ({limits_words(depth)}) decide, not its"
            " depth; status.depth.eligible counts the ready activities they let start",
        )
    return Condition(SCALING, "True", "Polling", f"{target} replicas match the queue's depth")
