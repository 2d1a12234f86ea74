"""Queue statistics: a snapshot read in O(1) from the queue's sets and counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from .priority import ActivityPriority

__all__ = ["QueueStats"]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue at one moment.

    ``pending`` are ready to run now (``by_priority`` splits them by level), ``running`` are
    leased to a worker, ``scheduled`` wait for their due time (delayed or backing off before
    a retry), ``dead_letter`` are in the dead-letter queue. ``completed``, ``failed`` (failed
    attempts, retried or not), ``retried``, ``cancelled``, ``redelivered`` (leases that
    expired and were handed out again), ``enqueued`` and ``throttled`` (sent back by a
    handler's ``RateLimitedError``, no retry used) count since the queue was created. What
    the queue's limits hold back at claim is in ``ActivityClient.get_limit_stats``.
    Runner-Q's names (``pending_count``, ``running_count``, ``completed_count``,
    ``failed_count``, ``dead_letter_count``) are read-only aliases, in ``as_dict`` too.
    """

    queue: str
    pending: int = 0
    running: int = 0
    scheduled: int = 0
    dead_letter: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    redelivered: int = 0
    enqueued: int = 0
    throttled: int = 0
    paused: bool = False
    by_priority: dict[ActivityPriority, int] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        """Activities waiting for or holding a worker: pending + running."""
        return self.pending + self.running

    # Runner-Q's names for the same numbers, for code ported from it.

    @property
    def pending_count(self) -> int:
        """``pending``."""
        return self.pending

    @property
    def running_count(self) -> int:
        """``running``."""
        return self.running

    @property
    def completed_count(self) -> int:
        """``completed``."""
        return self.completed

    @property
    def failed_count(self) -> int:
        """``failed`` (failed attempts, retried or not)."""
        return self.failed

    @property
    def dead_letter_count(self) -> int:
        """``dead_letter``."""
        return self.dead_letter

    def as_dict(self) -> dict[str, object]:
        return {
            "queue": self.queue,
            "pending": self.pending,
            "running": self.running,
            "scheduled": self.scheduled,
            "dead_letter": self.dead_letter,
            "completed": self.completed,
            "failed": self.failed,
            "retried": self.retried,
            "cancelled": self.cancelled,
            "redelivered": self.redelivered,
            "enqueued": self.enqueued,
            "throttled": self.throttled,
            "paused": self.paused,
            "by_priority": {p.value: n for p, n in self.by_priority.items()},
            # Runner-Q's names, as the properties above.
            "pending_count": self.pending,
            "running_count": self.running,
            "completed_count": self.completed,
            "failed_count": self.failed,
            "dead_letter_count": self.dead_letter,
        }
