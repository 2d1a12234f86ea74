"""Create, resume, update and delete of an ActivityQueue.

Reconcile: parse the spec (an invalid one gets a condition, an Event and a PermanentError,
and its Deployment is left alone), read the Secrets it names, apply the ConfigMap and the
Deployment (keeping the replicas the autoscaler set), write the queue configuration to
Redis, register the queue with the autoscaler, and report in the status.

Take and release (kopf peering only): the autoscaler serves a queue while kopf runs the
queue's daemon; kopf stops it when it pauses this operator. A queue taken again after a
pause is reconciled first, with its body as it is now: kopf calls no resume handler after a
pause, and a peer may have handled a change of the spec meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from runnerq.errors import RedisUnavailableError

from .actions import QueueWriter
from .conditions import (
    READY,
    REDIS_REACHABLE,
    SCALING,
    Condition,
    find,
    merge_conditions,
    timestamp,
)
from .kube import ApiError, KubeApi
from .metrics import OperatorMetrics
from .redis_queues import RedisPools, purge_queue
from .redis_target import RedisTarget, operator_target
from .registry import (
    QueueKey,
    QueueRegistry,
    QueueState,
    backoff_delay,
    object_ref,
    replicas_drifted,
)
from .reports import redis_lost, replicas_restored
from .spec import QueueSpec, RedisSpec, SpecError, parse_spec

__all__ = ["Reconciler", "initial_replicas"]

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

SECRET_RETRY_DELAY = 30.0

log = logging.getLogger("runnerq_operator.reconciler")


def initial_replicas(spec: QueueSpec, current: int | None) -> int:
    """Replicas to apply on reconcile: the external autoscaler's in External mode, else
    whatever the Deployment has now (the autoscaler owns them), else ``minReplicas``."""
    if spec.scaling.mode == "External" and spec.replicas is not None:
        return spec.replicas
    if current is not None:
        return current
    return spec.scaling.min_replicas


class Reconciler:
    def __init__(
        self,
        registry: QueueRegistry,
        writer: QueueWriter,
        api: KubeApi,
        pools: RedisPools,
        metrics: OperatorMetrics,
    ) -> None:
        self.registry = registry
        self.writer = writer
        self.api = api
        self.pools = pools
        self.metrics = metrics

    async def reconcile(self, body: Mapping[str, Any], logger: Logger) -> None:
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        try:
            spec = parse_spec(body.get("spec") or {}, name)
        except SpecError as exc:
            await self._invalid(body, exc)
            raise kopf.PermanentError(f"invalid spec: {exc}") from exc
        try:
            target = await self._resolve_target(namespace, spec.redis)
        except LookupError as exc:
            await self._secret_missing(body, spec, str(exc))
            raise kopf.TemporaryError(str(exc), delay=SECRET_RETRY_DELAY) from exc
        state = self.registry.upsert(body, spec, target, body.get("status"))
        async with state.lock:
            await self._apply(state)
            await self._configure_redis(state)
            self.writer.set_conditions(
                state,
                Condition(
                    READY,
                    "True",
                    "Reconciled",
                    f"Deployment {name}-worker and ConfigMap {name}-queue applied;"
                    f" queue {spec.queue} configured in Redis",
                ),
                Condition(
                    REDIS_REACHABLE, "True", "Connected", "the queue configuration was written"
                ),
                _scaling_condition(spec),
            )
            await self.writer.write_status(state, force=True)
        self.metrics.reconciles.labels("ok").inc()
        logger.info("queue %s reconciled with %s replicas", spec.queue, state.replicas)

    async def _apply(self, state: QueueState) -> None:
        try:
            current = await self.writer.current_replicas(state)
            await self.writer.apply_owned(state, initial_replicas(state.spec, current))
        except ApiError as exc:
            self.metrics.errors.labels("kubernetes").inc()
            self.metrics.reconciles.labels("error").inc()
            reason = "Invalid" if exc.status == 422 else "ApplyFailed"
            self.writer.set_conditions(
                state, Condition(READY, "False", reason, f"cannot apply the owned objects: {exc}")
            )
            await self.writer.event(
                state, "Warning", reason, f"cannot apply the owned objects: {exc}"
            )
            await self._status_quietly(state)
            if exc.status == 422:
                self.registry.remove(state.key)
                raise kopf.PermanentError(
                    f"the API server refused the owned objects: {exc}"
                ) from exc
            raise kopf.TemporaryError(f"cannot apply the owned objects: {exc}", delay=10) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.errors.labels("kubernetes").inc()
            raise kopf.TemporaryError(f"Kubernetes API unreachable: {exc}", delay=5) from exc

    async def _configure_redis(self, state: QueueState) -> None:
        try:
            await self.writer.write_config(state)
        except RedisUnavailableError as exc:
            self.metrics.errors.labels("redis").inc()
            self.metrics.reconciles.labels("error").inc()
            state.failures += 1
            await self.writer.redis_lost(state, str(exc))
            message = redis_lost(str(exc), state.replicas, state.depth_read_at)
            self.writer.set_conditions(
                state,
                Condition(READY, "False", "RedisUnreachable", message),
                Condition(REDIS_REACHABLE, "False", "ConnectionFailed", str(exc)),
            )
            await self._status_quietly(state)
            delay = backoff_delay(state.spec.scaling.poll_interval, state.failures, 60.0)
            raise kopf.TemporaryError(str(exc), delay=delay) from exc

    async def _resolve_target(self, namespace: str, redis: RedisSpec) -> RedisTarget:
        secret_url = password = ca = None
        if redis.url_secret is not None:
            ref = redis.url_secret
            secret_url = await self.api.secret_value(namespace, ref.name, ref.key)
        if redis.password_secret is not None:
            ref = redis.password_secret
            password = await self.api.secret_value(namespace, ref.name, ref.key)
        if redis.tls and redis.ca_secret is not None:
            ref = redis.ca_secret
            ca = await self.api.secret_value(namespace, ref.name, ref.key)
        return operator_target(redis, secret_url=secret_url, password=password, ca_data=ca)

    async def _invalid(self, body: Mapping[str, Any], error: SpecError) -> None:
        self.metrics.errors.labels("spec").inc()
        self.metrics.reconciles.labels("invalid").inc()
        meta = body["metadata"]
        self.registry.remove((meta["namespace"], meta["name"]))
        message = "invalid spec: " + "; ".join(error.problems)
        conditions = [
            Condition(READY, "False", "InvalidSpec", message),
            Condition(SCALING, "False", "InvalidSpec", "not scaling until the spec is fixed"),
        ]
        await self._report(body, conditions, "InvalidSpec", message)

    async def _secret_missing(self, body: Mapping[str, Any], spec: QueueSpec, error: str) -> None:
        self.metrics.errors.labels("kubernetes").inc()
        meta = body["metadata"]
        self.registry.remove((meta["namespace"], meta["name"]))
        conditions = [
            Condition(READY, "False", "SecretNotFound", error),
            Condition(REDIS_REACHABLE, "Unknown", "SecretNotFound", error),
        ]
        await self._report(body, conditions, "SecretNotFound", error)

    async def _report(
        self,
        body: Mapping[str, Any],
        conditions: list[Condition],
        reason: str,
        message: str,
    ) -> None:
        """Conditions and a Warning Event for a queue that is not (any more) registered."""
        generation = int(body["metadata"].get("generation") or 0)
        existing = (body.get("status") or {}).get("conditions") or []
        before = find(existing, READY)
        repeated = before is not None and (before.get("reason"), before.get("message")) == (
            reason,
            message,
        )
        merged = merge_conditions(existing, conditions, generation, timestamp())
        ref = object_ref(body)
        meta = ref["metadata"]
        try:
            await self.api.patch_status(
                meta["namespace"],
                meta["name"],
                {"observedGeneration": generation, "conditions": merged},
            )
            if not repeated:  # one Event per problem, not one per retry
                await self.api.post_event(ref, "Warning", reason, message)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.errors.labels("kubernetes").inc()
            raise kopf.TemporaryError(f"cannot report {reason}: {exc}", delay=10) from exc

    async def _status_quietly(self, state: QueueState) -> None:
        try:
            await self.writer.write_status(state, force=True)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.errors.labels("kubernetes").inc()
            raise kopf.TemporaryError(f"cannot write the status: {exc}", delay=10) from exc

    async def delete(self, body: Mapping[str, Any], logger: Logger) -> None:
        """Purge the queue's Redis keys (only called when spec.deletionPolicy is Purge)."""
        meta = body["metadata"]
        self.forget(body)
        spec = parse_spec(body.get("spec") or {}, meta["name"])
        try:
            target = await self._resolve_target(meta["namespace"], spec.redis)
        except LookupError as exc:
            raise kopf.PermanentError(f"cannot purge: {exc}") from exc
        try:
            deleted = await purge_queue(self.pools.client(target), spec.queue)
        except RedisUnavailableError as exc:
            raise kopf.TemporaryError(f"cannot purge queue {spec.queue}: {exc}", delay=10) from exc
        finally:
            await self.pools.discard(self.registry.targets())
        logger.info("purged %d keys of queue %s", deleted, spec.queue)

    async def take(self, body: Mapping[str, Any], logger: Logger) -> None:
        """Serve the queue (after reconciling it, when it was released while registered).

        A temporary failure still serves what the reconcile registered (the new spec, or
        nothing when it dropped the queue), and raises: the caller tries again."""
        key = _key(body)
        if self.registry.stale(key):
            try:
                await self.reconcile(body, logger)
            except kopf.PermanentError as exc:  # reported in its conditions and an Event
                logger.warning("queue not served until its spec changes: %s", exc)
            except kopf.TemporaryError:
                self.registry.take(key, fresh=False)
                raise
        self.registry.take(key, fresh=True)

    async def release(self, body: Mapping[str, Any]) -> None:
        """Serve the queue no more; returns when no write for it is in flight."""
        state = self.registry.release(_key(body))
        if state is None:
            return
        async with state.lock:
            state.stabilizer = None  # its history ends here: a peer scales meanwhile
        self.metrics.forget(state.namespace, state.name, state.spec.queue)

    async def deployment_seen(self, deployment: Mapping[str, Any]) -> None:
        """A worker Deployment as the watch saw it: replicas someone else set (``kubectl
        scale``) go back to the operator's decision at once, with a log line and an Event.
        The operator is the one writer of the replicas; the status never says otherwise."""
        meta = deployment.get("metadata") or {}
        name = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
        state = self.registry.get((str(meta.get("namespace")), str(name)))
        if state is None or not self.registry.serves(state.key):
            return
        async with state.lock:
            found = (deployment.get("spec") or {}).get("replicas")
            generation = int(meta.get("generation") or 0)
            if not replicas_drifted(found, generation, state.replicas, state.deployment_generation):
                return
            decided = state.replicas
            assert decided is not None and found is not None  # replicas_drifted says so
            try:
                await self.writer.apply_replicas(state, decided)
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                self.metrics.errors.labels("kubernetes").inc()
                log.warning("%s: cannot restore the replicas: %s", self.writer.label(state), exc)
                return
            message = replicas_restored(int(found), decided)
            log.info("%s: %s", self.writer.label(state), message)
            await self.writer.event(state, "Normal", "ReplicasRestored", message)

    def forget(self, body: Mapping[str, Any]) -> None:
        state = self.registry.remove(_key(body))
        if state is not None:
            self.metrics.forget(state.namespace, state.name, state.spec.queue)


def _key(body: Mapping[str, Any]) -> QueueKey:
    meta = body["metadata"]
    return (meta["namespace"], meta["name"])


def _scaling_condition(spec: QueueSpec) -> Condition:
    if spec.scaling.mode == "External":
        return Condition(
            SCALING,
            "False",
            "ExternalAutoscaler",
            "spec.scaling.mode is External: spec.replicas (the scale subresource) sets them",
        )
    return Condition(SCALING, "True", "Polling", f"polling every {spec.scaling.poll_interval:g}s")
