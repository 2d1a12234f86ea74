"""In a cluster: each queue's ActivityQueue, as the overview shows it (``cluster``).

``cluster_view`` turns an ActivityQueue into the overview's ``cluster`` field (pure); the
operator writes what it reads into ``status`` (docs/operator.md): ``replicas`` (the worker
Deployment's, as the operator set them), ``desiredReplicas`` (what the last depth asks for),
``lastScaleTime`` (when it last changed the replicas) and ``conditions`` (Ready,
RedisReachable, Scaling, SchedulesReady). An ActivityQueue's queue in Redis is
``spec.queue``, or its ``metadata.name`` when that is not set.

``ClusterStatus`` keeps the list of ActivityQueues for a few seconds (``ttl``), read by one
request at a time whoever asks (every browser of every page shares it), so the API server
sees at most one list per ``ttl`` per console process. When the list cannot be read the
overview shows ``cluster: null`` and the failure is logged; it never fails a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from .kube import KubeError

__all__ = [
    "DEFAULT_TTL",
    "MAX_CONDITIONS",
    "ClusterIndex",
    "ClusterStatus",
    "QueueRef",
    "cluster_view",
    "index_queues",
    "queue_of",
]

log = logging.getLogger("runnerq.console.cluster")

#: Seconds a list of ActivityQueues is shown before it is read again.
DEFAULT_TTL = 5.0
#: Conditions shown per ActivityQueue, at most (the operator writes four).
MAX_CONDITIONS = 16
#: Characters of a condition's message, at most.
MAX_MESSAGE = 1000
_STATUSES = ("True", "False", "Unknown")

# What a failed list raises: the API server's refusal, the connection, a timeout, a body
# that is not JSON.
_FAILURES: tuple[type[BaseException], ...] = (
    KubeError,
    aiohttp.ClientError,
    TimeoutError,
    OSError,
    ValueError,
)


def _text(value: Any, most: int = 253) -> str:
    return value[:most] if isinstance(value, str) else ""


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _condition(item: Mapping[str, Any]) -> dict[str, str]:
    status = item.get("status")
    return {
        "type": _text(item.get("type")),
        "status": status if status in _STATUSES else "Unknown",
        "reason": _text(item.get("reason")),
        "message": _text(item.get("message"), MAX_MESSAGE),
        "lastTransitionTime": _text(item.get("lastTransitionTime"), 64),
    }


def queue_of(obj: Mapping[str, Any]) -> str | None:
    """The queue in Redis an ActivityQueue names: ``spec.queue``, else its name."""
    spec = obj.get("spec")
    queue = spec.get("queue") if isinstance(spec, Mapping) else None
    if isinstance(queue, str) and queue:
        return queue
    name = (obj.get("metadata") or {}).get("name")
    return name if isinstance(name, str) and name else None


def cluster_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The overview's ``cluster`` field of one ActivityQueue: its namespace and name, the
    replicas and desired replicas, the Ready condition's status ("Unknown" when it has none
    yet), the last scale (``lastScaleTime`` with the Scaling condition's message; null when
    the operator never changed the replicas) and every condition."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    status = obj.get("status")
    status = status if isinstance(status, Mapping) else {}
    raw = status.get("conditions")
    conditions = [
        _condition(c) for c in (raw if isinstance(raw, list) else []) if isinstance(c, Mapping)
    ][:MAX_CONDITIONS]
    by_type = {c["type"]: c for c in conditions}
    ready = by_type.get("Ready", {}).get("status", "Unknown")
    scaled = _text(status.get("lastScaleTime"), 64)
    return {
        "namespace": _text(meta.get("namespace")),
        "name": _text(meta.get("name")),
        "replicas": _count(status.get("replicas")),
        "desired": _count(status.get("desiredReplicas")),
        "ready": ready,
        "last_scale": (
            {"time": scaled, "message": by_type.get("Scaling", {}).get("message", "")}
            if scaled
            else None
        ),
        "conditions": conditions,
    }


@dataclass(frozen=True, slots=True)
class QueueRef:
    """The ActivityQueue of a queue, enough to post an Event about it."""

    namespace: str
    name: str
    uid: str

    def involved_object(self) -> dict[str, str]:
        found = {
            "apiVersion": "runnerq.io/v1alpha1",
            "kind": "ActivityQueue",
            "namespace": self.namespace,
            "name": self.name,
        }
        if self.uid:
            found["uid"] = self.uid
        return found


@dataclass(frozen=True, slots=True)
class ClusterIndex:
    """The ActivityQueues by the queue they name: what the overview shows (``views``) and
    where an Event goes (``refs``); ``shared`` lists queues named by several (the first by
    namespace and name is shown)."""

    views: dict[str, dict[str, Any]]
    refs: dict[str, QueueRef]
    shared: tuple[str, ...] = ()


def index_queues(objects: Iterable[Mapping[str, Any]]) -> ClusterIndex:
    def order(obj: Mapping[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    views: dict[str, dict[str, Any]] = {}
    refs: dict[str, QueueRef] = {}
    shared: list[str] = []
    for obj in sorted(objects, key=order):
        queue = queue_of(obj)
        if queue is None:
            continue
        if queue in views:
            if queue not in shared:
                shared.append(queue)
            continue
        view = cluster_view(obj)
        views[queue] = view
        uid = (obj.get("metadata") or {}).get("uid")
        refs[queue] = QueueRef(view["namespace"], view["name"], uid if isinstance(uid, str) else "")
    return ClusterIndex(views, refs, tuple(shared))


Fetch = Callable[[], Awaitable[list[dict[str, Any]]]]


class ClusterStatus:
    """The ActivityQueues ``fetch`` lists, kept ``ttl`` seconds (a failure too: the API
    server is not asked again sooner); concurrent callers share one read in flight."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl: float = DEFAULT_TTL,
        most: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._most = most
        self._clock = clock
        self._index: ClusterIndex | None = None
        self._read_at: float | None = None
        self._reading: asyncio.Future[ClusterIndex | None] | None = None
        self._shared: tuple[str, ...] = ()
        self.reads = 0  # lists asked of the API server (for tests and curiosity)

    async def index(self) -> ClusterIndex | None:
        """The index, or None when the last read failed."""
        if self._read_at is not None and self._clock() - self._read_at < self._ttl:
            return self._index
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
        # A caller that goes away (a closed request) does not cancel the others' read.
        return await asyncio.shield(self._reading)

    async def view(self, queue: str) -> dict[str, Any] | None:
        index = await self.index()
        return None if index is None else index.views.get(queue)

    async def ref(self, queue: str) -> QueueRef | None:
        index = await self.index()
        return None if index is None else index.refs.get(queue)

    async def _read(self) -> ClusterIndex | None:
        self.reads += 1
        index: ClusterIndex | None
        try:
            objects = await self._fetch()
            index = index_queues(objects)
        except _FAILURES as exc:
            log.warning("cannot list ActivityQueues (the overview shows cluster: null): %s", exc)
            index = None
        except Exception:
            log.exception("cannot list ActivityQueues (the overview shows cluster: null)")
            index = None
        else:
            if self._most is not None and len(objects) >= self._most:
                log.warning(
                    "only the first %d ActivityQueues are shown: give --kube-namespace", self._most
                )
            if index.shared and index.shared != self._shared:
                log.warning(
                    "several ActivityQueues name the queue(s) %s: the overview shows the first by"
                    " namespace and name (give --kube-namespace to choose)",
                    ", ".join(index.shared[:10]),
                )
            self._shared = index.shared
        finally:
            self._reading = None
        self._index, self._read_at = index, self._clock()
        return index

    async def aclose(self) -> None:
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
