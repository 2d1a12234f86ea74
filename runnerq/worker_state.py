"""``WorkerState``: what the parts of one running worker share, and ``Running``, the entry of
an activity a slot is running."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from .config import WorkerSettings
from .context import CancelToken

__all__ = ["Running", "WorkerState", "queue_default"]

log = logging.getLogger("runnerq.worker")


@dataclass(slots=True)
class Running:
    """An activity a slot task is running."""

    task: asyncio.Task[None]  # the slot's
    token: str
    cancel_token: CancelToken
    stop_reason: str | None = None  # why this worker stopped it, if it did
    cancels: int = 0  # cancellations of the slot task made for this activity

    def stop(self, reason: str) -> None:
        """Stop the handler: the first reason is the one that counts."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.cancel_token.cancel(reason)
        self.cancels += 1
        self.task.cancel()


@dataclass(slots=True, eq=False)
class WorkerState:
    settings: WorkerSettings
    held: dict[str, str] = field(default_factory=dict)  # id -> lease token, until acked/released
    running: dict[str, Running] = field(default_factory=dict)
    poisoned: dict[str, int] = field(default_factory=dict)  # claimed ids re-delivered too often
    stopping: bool = False
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    last_redis_ok: float = 0.0  # local monotonic time Redis last answered
    renewed_at: float = 0.0  # local time of the last heartbeat that renewed held leases
    # The queue's defaults (its config hash, read at start and with each heartbeat), worked
    # out when read, not per activity.
    default_max_retries: int = 0
    default_timeout: float = 0.0

    def __post_init__(self) -> None:
        self.default_max_retries = self.settings.default_max_retries
        self.default_timeout = self.settings.default_timeout

    def redis_answered(self) -> None:
        self.last_redis_ok = time.monotonic()

    def stop_activity(self, activity_id: str, reason: str) -> None:
        """Stop its handler if it runs (lease lost, cancelled) and forget its lease."""
        entry = self.running.get(activity_id)
        if entry is not None and entry.stop_reason is None:
            entry.stop(reason)
        self.held.pop(activity_id, None)

    def read_defaults(self, config: dict[str, str]) -> None:
        settings = self.settings
        self.default_max_retries = int(
            queue_default(config, "max_retries", settings.default_max_retries, integer=True)
        )
        self.default_timeout = queue_default(config, "timeout", settings.default_timeout)


def queue_default(
    config: dict[str, str], name: str, fallback: float, *, integer: bool = False
) -> float:
    """A default from a queue's config hash, or ``fallback`` when it is absent or not a usable
    number (finite, >= 0, > 0 for a timeout, whole for a count)."""
    value = config.get(name)
    if value is None:
        return fallback
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    usable = math.isfinite(number) and number >= 0
    usable = usable and (number.is_integer() if integer else number > 0)
    if not usable:
        log.warning("queue config %s=%r is not usable: using %s", name, value, fallback)
        return fallback
    return number
