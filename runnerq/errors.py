"""Every exception runnerq raises, in one tree.

::

    RunnerQError
    ├── ConfigurationError          bad settings, URL or registration (also a ValueError)
    │   └── DuplicateHandlerError   a second handler for one activity type
    ├── SerializationError          a payload or result that is not JSON, or too large
    ├── RedisUnavailableError       Redis cannot be reached (connect refused, connection lost)
    │   └── BulkEnqueueUnavailableError  ... part way through a bulk enqueue (a BulkEnqueueError)
    ├── BulkEnqueueError            a bulk enqueue failed part way: what got in, what did not
    ├── ActivityNotFoundError       no activity with that id (never enqueued, or expired)
    ├── ScheduleConflictError       a schedule of that name has another owner (code, the
    │                               operator's ActivityQueue spec, or the API)
    ├── WorkerError                 what awaiting an activity's result can raise
    │   ├── ActivityDeadLetteredError   retries exhausted or a non-retryable error
    │   │   └── ActivityTimedOutError   ... where the last attempt ran past its timeout
    │   ├── ActivityCancelledError      cancelled before it finished
    │   └── ResultTimeoutError          the caller's own wait ran out; the activity goes on
    └── ActivityError               what handlers raise to steer retries
        ├── RetryableError          try again later, with backoff (``ActivityError.retry``)
        ├── NonRetryableError       straight to the dead-letter queue (``ActivityError.non_retry``)
        └── RateLimitedError        the remote side throttled: back after ``retry_after``, no
                                    retry used; its type or key held back on every worker

How a handler's outcome maps to what happens next:

=================================  ============================================
handler                            outcome
=================================  ============================================
returns a JSON value (or ``None``)  completed; the value is the result
raises ``RetryableError``          retried with backoff while retries remain
raises any other exception         retried, like ``RetryableError``
runs past its timeout              cancelled, counted as ``activity_timeout``, retried
raises ``NonRetryableError``       dead-lettered at once
raises ``RateLimitedError``        back after ``retry_after``, no retry used (docs/limits.md)
returns something not JSON         dead-lettered at once (it would fail again)
=================================  ============================================

Callers never see redis-py's exceptions: they are translated at the boundary into
``RedisUnavailableError``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from .durations import seconds

if TYPE_CHECKING:
    from .future import ActivityFuture

__all__ = [
    "ActivityCancelledError",
    "ActivityDeadLetteredError",
    "ActivityError",
    "ActivityNotFoundError",
    "ActivityTimedOutError",
    "BulkEnqueueError",
    "BulkEnqueueUnavailableError",
    "ConfigurationError",
    "DuplicateHandlerError",
    "NonRetryableError",
    "RateLimitedError",
    "RedisUnavailableError",
    "ResultTimeoutError",
    "RetryableError",
    "RunnerQError",
    "ScheduleConflictError",
    "SerializationError",
    "WorkerError",
    "non_retryable",
]


class RunnerQError(Exception):
    """Base of every runnerq exception."""


class ConfigurationError(RunnerQError, ValueError):
    """Settings, a URL or a registration that cannot work."""


class DuplicateHandlerError(ConfigurationError):
    """A handler is already registered for this activity type."""


class SerializationError(RunnerQError, ValueError):
    """A payload, result or metadata that is not JSON, or larger than the configured limit."""


class RedisUnavailableError(RunnerQError, ConnectionError):
    """Redis could not be reached, or the connection was lost mid-command."""


class BulkEnqueueError(RunnerQError):
    """A bulk enqueue (``enqueue_many``) failed part way: Redis refused a batch (out of
    memory, say), or the connection was lost (then it is a ``BulkEnqueueUnavailableError``,
    also a ``RedisUnavailableError``), after some batches may have gone in.

    Entries go to Redis in order, so the list given splits in three: the first
    ``len(applied)`` entries were enqueued (``applied`` holds their futures); the next
    ``len(unknown)`` were written but no reply was read (their ids: each may or may not be
    in the queue; send them again with idempotency keys to be sure of once); the last
    ``unsent`` were never written (safe to send again)."""

    def __init__(
        self, message: str, applied: list[ActivityFuture], unknown: list[str], unsent: int
    ) -> None:
        super().__init__(
            f"{message} ({len(applied)} enqueued, {len(unknown)} unknown, {unsent} not sent)"
        )
        self.applied = applied
        self.unknown = unknown
        self.unsent = unsent


class BulkEnqueueUnavailableError(BulkEnqueueError, RedisUnavailableError):
    """A ``BulkEnqueueError`` because Redis could not be reached or the connection was lost."""


class ActivityNotFoundError(RunnerQError, LookupError):
    """No activity with this id exists: it was never enqueued, or its result expired."""

    def __init__(self, activity_id: str) -> None:
        super().__init__(f"no activity {activity_id!r} (never enqueued, or its result expired)")
        self.activity_id = activity_id


class ScheduleConflictError(RunnerQError):
    """A schedule of that name belongs to another owner (code, the operator or the API)."""

    def __init__(self, name: str, owner: str) -> None:
        super().__init__(
            f"schedule {name!r} belongs to {owner!r}: remove it there first, or take it over"
        )
        self.name = name
        self.owner = owner


class WorkerError(RunnerQError):
    """An activity did not complete. Raised by ``ActivityFuture.get_result``."""

    def __init__(self, activity_id: str, message: str) -> None:
        super().__init__(message)
        self.activity_id = activity_id


class ActivityDeadLetteredError(WorkerError):
    """The activity is in the dead-letter queue; ``last_error`` says why."""

    def __init__(self, activity_id: str, last_error: str, reason: str = "failed") -> None:
        super().__init__(
            activity_id, f"activity {activity_id} dead-lettered ({reason}): {last_error}"
        )
        self.last_error = last_error
        self.reason = reason


class ActivityTimedOutError(ActivityDeadLetteredError):
    """The activity was dead-lettered after its last attempt ran past its timeout."""


class ActivityCancelledError(WorkerError):
    """The activity was cancelled before it finished."""

    def __init__(self, activity_id: str) -> None:
        super().__init__(activity_id, f"activity {activity_id} was cancelled")


class ResultTimeoutError(WorkerError, TimeoutError):
    """Waiting for the result took longer than the caller allowed; the activity goes on."""

    def __init__(self, activity_id: str, waited: float) -> None:
        super().__init__(activity_id, f"no result for activity {activity_id} within {waited:g}s")
        self.waited = waited


class ActivityError(Exception):
    """Raised by handlers to say whether a failure is worth retrying.

    ``raise ActivityError.retry("upstream busy")`` or
    ``raise ActivityError.non_retry("no such customer")``.
    """

    retryable: bool = True

    @staticmethod
    def retry(message: str) -> RetryableError:
        return RetryableError(message)

    @staticmethod
    def non_retry(message: str) -> NonRetryableError:
        return NonRetryableError(message)


class RetryableError(ActivityError):
    """A failure that may pass: the activity is retried with backoff while retries remain."""

    retryable = True


class NonRetryableError(ActivityError):
    """A failure that will not pass by retrying: the activity is dead-lettered at once."""

    retryable = False


class RateLimitedError(ActivityError):
    """The remote side said "too many requests": the activity goes back to the queue to run
    after ``retry_after`` (seconds or a timedelta), without using a retry or counting as a
    failure. ``hold`` says what else waits as long, on every worker (the claim skips it),
    like BullMQ's manual rate limit: ``"type"`` (the default) its activity type, ``"key"``
    its limit key (``ActivityOption.limit_key``; its type when it has none), ``"activity"``
    nothing but this activity."""

    retryable = True

    def __init__(
        self,
        retry_after: float | dt.timedelta,
        message: str = "",
        *,
        hold: Literal["type", "key", "activity"] = "type",
    ) -> None:
        after = seconds(retry_after)
        if after is None or after < 0:
            raise ConfigurationError(
                f"retry_after must be a number of seconds or a timedelta >= 0, not {retry_after!r}"
            )
        super().__init__(message or f"rate limited: retry after {after:g}s")
        self.retry_after = float(after)
        if hold not in ("type", "key", "activity"):
            raise ConfigurationError(f"hold must be 'type', 'key' or 'activity', not {hold!r}")
        self.hold = hold


@contextlib.contextmanager
def non_retryable(what: str = "invalid payload") -> Iterator[None]:
    """Turn any exception inside the block into a ``NonRetryableError``.

    The one-line way to say that a payload which does not parse will never parse::

        with non_retryable():
            order = Order(**payload)
    """
    try:
        yield
    except ActivityError:
        raise
    except Exception as exc:
        raise NonRetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc
