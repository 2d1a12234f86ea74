"""What the operator knows about each ActivityQueue between handler calls and polls.

The kopf handlers register and drop queues; the autoscaler polls the registered ones that
this operator *serves*. Each queue's ``lock`` serializes everything that writes its
Deployment or status, so the reconciler and the autoscaler never race: one writer of
``spec.replicas``.

Standalone, the operator serves every registered queue. With kopf peering (``gated``) it
serves a queue only between ``take`` and ``release``: while kopf runs the queue's daemon,
which kopf stops whenever it pauses this operator in favour of a peer of a higher priority.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .redis_target import RedisTarget
from .scaling import Depth, Stabilizer
from .spec import QueueSpec

__all__ = [
    "QueueKey",
    "QueueRegistry",
    "QueueState",
    "backoff_delay",
    "object_ref",
    "replicas_drifted",
]

QueueKey = tuple[str, str]  # (namespace, name)


def object_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an ActivityQueue's body needed to own objects and post Events about it."""
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", "runnerq.io/v1alpha1"),
        "kind": body.get("kind", "ActivityQueue"),
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
    }


def backoff_delay(interval: float, failures: int, cap: float) -> float:
    """Seconds before the next poll after ``failures`` failed ones in a row."""
    if failures <= 0:
        return interval
    return float(min(max(cap, interval), interval * 2 ** min(failures - 1, 16)))


def replicas_drifted(
    found_replicas: int | None,
    found_generation: int,
    decided: int | None,
    written_generation: int | None,
) -> bool:
    """Whether a Deployment seen by the watch carries replicas someone else set: a generation
    after the operator's last write (older or equal ones are its own writes, seen late) with
    replicas other than its decision. Unknown decisions are nobody's to restore."""
    if decided is None or written_generation is None or found_replicas is None:
        return False
    return found_generation > written_generation and found_replicas != decided


@dataclass(eq=False)
class QueueState:
    ref: dict[str, Any]
    generation: int
    spec: QueueSpec
    target: RedisTarget
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The Deployment's replicas as the operator last wrote or read them.
    replicas: int | None = None
    desired: int | None = None
    stabilizer: Stabilizer | None = None
    depth: Depth | None = None
    next_poll: float = 0.0
    failures: int = 0
    redis_error: str | None = None
    #: When Redis stopped answering (the operator's monotonic clock), None while it answers.
    redis_lost_at: float | None = None
    #: When the depth in ``depth`` was read (RFC 3339): status.lastPollTime.
    depth_read_at: str | None = None
    #: metadata.generation of the Deployment as the operator's last write left it: a later
    #: generation with other replicas is someone else's change (``replicas_drifted``).
    deployment_generation: int | None = None
    config_written: bool = False
    last_scale_time: str | None = None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    #: status.schedules and status.nextTick, as the schedule firer last read them.
    schedules: list[dict[str, Any]] | None = None
    next_tick: str | None = None
    #: Set to wake the queue's schedule firer (its spec or registration changed).
    schedules_wake: asyncio.Event = field(default_factory=asyncio.Event)
    last_status: dict[str, Any] = field(default_factory=dict)
    last_status_at: float = float("-inf")

    @property
    def key(self) -> QueueKey:
        meta = self.ref["metadata"]
        return (meta["namespace"], meta["name"])

    @property
    def name(self) -> str:
        return str(self.ref["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.ref["metadata"]["namespace"])


class QueueRegistry:
    def __init__(self, *, gated: bool = False) -> None:
        self._queues: dict[QueueKey, QueueState] = {}
        #: Peering: queues are served only between take() and release().
        self.gated = gated
        self._served: set[QueueKey] = set()
        #: Queues released while registered: their spec may have changed since (a peer
        #: handled the change), so they are reconciled again before they are served.
        self._stale: set[QueueKey] = set()
        #: Set on every change (the autoscaler waits on it and clears it).
        self.changed = asyncio.Event()
        self._subscribers: list[asyncio.Event] = []

    def __len__(self) -> int:
        return len(self._queues)

    def __iter__(self) -> Iterator[QueueState]:
        return iter(list(self._queues.values()))

    def subscribe(self) -> asyncio.Event:
        """An Event of one's own, set on every change like ``changed`` (for a second
        waiter: one that clears ``changed`` would hide a change from the other)."""
        event = asyncio.Event()
        self._subscribers.append(event)
        return event

    def _notify(self) -> None:
        self.changed.set()
        for event in self._subscribers:
            event.set()

    def get(self, key: QueueKey) -> QueueState | None:
        return self._queues.get(key)

    def upsert(
        self,
        body: Mapping[str, Any],
        spec: QueueSpec,
        target: RedisTarget,
        existing_status: Mapping[str, Any] | None = None,
    ) -> QueueState:
        """Register a queue or update its spec, keeping what was learnt at run time."""
        ref = object_ref(body)
        key = (ref["metadata"]["namespace"], ref["metadata"]["name"])
        generation = int(body["metadata"].get("generation") or 0)
        state = self._queues.get(key)
        if state is None or state.ref["metadata"]["uid"] != ref["metadata"]["uid"]:
            state = QueueState(ref=ref, generation=generation, spec=spec, target=target)
            status = existing_status or {}
            state.conditions = [dict(c) for c in status.get("conditions") or ()]
            state.last_scale_time = status.get("lastScaleTime")
            self._queues[key] = state
        else:
            if state.target != target or state.spec.queue_config != spec.queue_config:
                state.config_written = False
            state.ref, state.generation, state.spec, state.target = ref, generation, spec, target
        state.next_poll = 0.0  # poll at once with the new spec
        self._notify()
        return state

    def remove(self, key: QueueKey) -> QueueState | None:
        state = self._queues.pop(key, None)
        self._stale.discard(key)
        self._notify()
        return state

    def serves(self, key: QueueKey) -> bool:
        """Whether this operator may poll and write the queue now."""
        return not self.gated or key in self._served

    def served(self) -> list[QueueState]:
        """The registered queues this operator serves: the ones the autoscaler polls."""
        return [s for s in self._queues.values() if self.serves(s.key)]

    def stale(self, key: QueueKey) -> bool:
        """Released while registered, and not reconciled since."""
        return key in self._stale

    def take(self, key: QueueKey, *, fresh: bool) -> None:
        """Serve the queue from now on; ``fresh``: its registration is up to date again."""
        self._served.add(key)
        if fresh:
            self._stale.discard(key)
        state = self._queues.get(key)
        if state is not None:
            state.next_poll = 0.0
        self._notify()

    def release(self, key: QueueKey) -> QueueState | None:
        """Serve the queue no more. The caller waits for its lock: a write in flight ends."""
        self._served.discard(key)
        state = self._queues.get(key)
        if state is not None:
            self._stale.add(key)
        self._notify()
        return state

    def targets(self) -> set[RedisTarget]:
        return {s.target for s in self._queues.values()}
