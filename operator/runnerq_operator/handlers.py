"""The kopf handlers: thin, typed, and all kopf settings in the one startup handler.

Run with ``kopf run -m runnerq_operator.handlers --all-namespaces`` or
``python -m runnerq_operator`` (which also serves kopf's liveness endpoint).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from .naming import FIELD_MANAGER, GROUP, PLURAL, VERSION, WORKER_LABELS
from .peering import configure_peering, expected_peerings
from .runtime import OperatorRuntime
from .settings import OperatorConfig, SettingsError

__all__ = [
    "cleanup",
    "configure",
    "forget",
    "liveness",
    "purge",
    "reconcile",
    "restore_replicas",
    "serve",
]

#: Seconds before a failed take is tried again, when the error does not say.
_TAKE_RETRY_DELAY = 10.0


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig | None = memo.get("config")
    if config is None:  # `kopf run -m runnerq_operator.handlers`: read them here, stop if bad
        try:
            config = OperatorConfig.from_env(os.environ)
        except SettingsError as exc:
            raise kopf.PermanentError(str(exc)) from exc
    # kopf keeps its bookkeeping in annotations of our group, never in our status schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/purge-redis"
    # Events: ours are explicit; kopf adds one only for warnings and errors.
    settings.posting.reporting_component = FIELD_MANAGER
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    peered = configure_peering(settings, config)
    peerings = None
    if peered:
        logging.getLogger("runnerq_operator").info(
            "kopf peering %r with priority %d", settings.peering.name, settings.peering.priority
        )
        # Namespaces only from `python -m runnerq_operator`; after `kopf run -n` unknown (None).
        namespaces = memo.get("watched_namespaces")
        peerings = expected_peerings(
            settings.peering.name,
            clusterwide=settings.peering.clusterwide,
            namespaces=None if namespaces is None else list(namespaces),
        )
    runtime = OperatorRuntime(config, peered=peered, peerings=peerings)
    await runtime.start()
    memo.runtime = runtime


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: OperatorRuntime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()


@kopf.on.probe(id="autoscaler")
def liveness(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    runtime: OperatorRuntime = memo.runtime
    if not runtime.healthy:
        raise RuntimeError("the autoscaler is not running")
    found: dict[str, Any] = {
        "queues": len(runtime.registry),
        "served": len(runtime.registry.served()),
    }
    if runtime.peering is not None:
        # Not a failure: a restart would not create the missing peering object.
        found["peering"] = runtime.peering.health()
    return found


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    runtime: OperatorRuntime = memo.runtime
    await runtime.reconciler.reconcile(body, logger)


def _purge_requested(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == "Purge"


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_purge_requested)
async def purge(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Only queues with ``deletionPolicy: Purge`` get a finalizer and come here."""
    runtime: OperatorRuntime = memo.runtime
    await runtime.reconciler.delete(body, logger)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Stop polling a deleted queue (its Deployment and ConfigMap go by garbage collection).

    ``optional``: no finalizer for this; kopf calls it when it sees the deletion."""
    runtime: OperatorRuntime = memo.runtime
    runtime.reconciler.forget(body)


class _QuietWatch(logging.Filter):
    """kopf logs every run of an event handler at INFO ("Handler ... succeeded."): one line
    per change of every worker Deployment. The handler logs what it does itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Handler 'restore_replicas'")


logging.getLogger("kopf.objects").addFilter(_QuietWatch())


@kopf.on.event("apps", "v1", "deployments", labels=WORKER_LABELS)
async def restore_replicas(
    body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any
) -> None:
    """The worker Deployments, watched: replicas set by someone else are restored."""
    if event.get("type") == "DELETED":
        return
    runtime: OperatorRuntime = memo.runtime
    await runtime.reconciler.deployment_seen(body)


def _peered(memo: kopf.Memo, **_: Any) -> bool:
    runtime: OperatorRuntime = memo.runtime
    return runtime.registry.gated


@kopf.daemon(
    GROUP, VERSION, PLURAL, when=_peered, cancellation_backoff=30.0, cancellation_timeout=10.0
)
async def serve(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """With peering only: the autoscaler serves the queue while kopf runs this daemon. kopf
    stops it when it pauses this operator (a peer of a higher priority runs), when the queue
    is deleted and when the operator exits, and starts it again when it resumes.

    Like every daemon it makes kopf put its finalizer on the queue. A take that fails for a
    while (the queue is served meanwhile with what it registered) is retried here, so that
    kopf's stop always ends in ``release``."""
    runtime: OperatorRuntime = memo.runtime
    try:
        while not stopped:
            try:
                await runtime.reconciler.take(body, logger)
                break
            except kopf.TemporaryError as exc:
                delay = exc.delay or _TAKE_RETRY_DELAY
                logger.warning("cannot reconcile the queue: %s; again in %gs", exc, delay)
                await stopped.wait(delay)
        await stopped.wait()
    finally:
        await runtime.reconciler.release(body)
