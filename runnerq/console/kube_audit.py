"""Audited actions as Kubernetes Events on the queue's ActivityQueue (``--kube-events``).

After an action is written to the audit stream, ``KubeAuditHook`` posts a core/v1 Event
(what ``kubectl describe activityqueue`` and ``kubectl get events`` show) about the
ActivityQueue that names the queue: reason ``Console<Action>`` (``ConsolePurge``,
``ConsoleRequeueAll``, ...), a message saying who (name, role, how identified), what and
how many. The Event is posted in the background: the action's answer never waits for the
API server, and a failure (no such ActivityQueue, no RBAC, API server down) is logged and
nothing else. At most ``MAX_PENDING`` Events are in flight; more are dropped with a warning.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from typing import Any

import aiohttp

from .audit import AuditEntry
from .cluster import ClusterStatus, QueueRef
from .kube import KubeClient, KubeError

__all__ = ["MAX_PENDING", "REPORTING_COMPONENT", "KubeAuditHook", "audit_event"]

log = logging.getLogger("runnerq.console.audit")

REPORTING_COMPONENT = "runnerq-console"
MAX_PENDING = 100
MAX_EVENT_MESSAGE = 1024

# What an action did, for the Event's message.
_DID = {
    "enqueue": "enqueued an activity",
    "cancel": "cancelled an activity",
    "pause": "paused the queue",
    "resume": "resumed the queue",
    "trigger_schedule": "triggered the schedule",
    "requeue": "requeued selected dead letters",
    "requeue_all": "requeued all dead letters",
    "purge": "purged the dead letters",
}


def _reason(action: str) -> str:
    words = "".join(part.capitalize() for part in action.split("_") if part.isalnum())
    return f"Console{words or 'Action'}"[:128]


def _timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_message(entry: AuditEntry) -> str:
    """Who did what, on which queue, to how many: "alice (admin, via token) purged the dead
    letters on queue emails through the console; target: dead letters; activities: 12"."""
    did = _DID.get(entry.action, entry.action)
    target = f"; target: {entry.target}" if entry.target else ""
    text = (
        f"{entry.who} ({entry.role}, via {entry.via}) {did} on queue {entry.queue} through"
        f" the console{target}; activities: {entry.count}"
    )
    return text[:MAX_EVENT_MESSAGE]


def audit_event(
    entry: AuditEntry, ref: QueueRef, instance: str, now: dt.datetime
) -> dict[str, Any]:
    """The core/v1 Event of one audited action on the ActivityQueue ``ref``."""
    stamp = _timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
        "involvedObject": ref.involved_object(),
        "type": "Normal",
        "reason": _reason(entry.action),
        "action": entry.action[:128],
        "message": audit_message(entry),
        "source": {"component": REPORTING_COMPONENT},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class KubeAuditHook:
    """An ``ActionHook``: each audited action becomes an Event on its ActivityQueue."""

    def __init__(self, kube: KubeClient, cluster: ClusterStatus) -> None:
        self._kube = kube
        self._cluster = cluster
        self._pending: set[asyncio.Task[None]] = set()
        self.instance = socket.gethostname()

    async def __call__(self, entry: AuditEntry) -> None:
        if len(self._pending) >= MAX_PENDING:
            log.warning(
                "%d Events still being posted: no Event for %s on %s",
                len(self._pending),
                entry.action,
                entry.queue,
            )
            return
        task = asyncio.ensure_future(self._post(entry))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, entry: AuditEntry) -> None:
        try:
            ref = await self._cluster.ref(entry.queue)
            if ref is None:
                log.info(
                    "no ActivityQueue names queue %s: no Event for %s", entry.queue, entry.action
                )
                return
            event = audit_event(entry, ref, self.instance, dt.datetime.now(dt.UTC))
            await self._kube.create_event(ref.namespace, event)
        except (KubeError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("cannot post the Event for %s on %s: %s", entry.action, entry.queue, exc)
        except Exception:
            log.exception("cannot post the Event for %s on %s", entry.action, entry.queue)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for the Events in flight (at most ``timeout`` seconds), then cancel the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
