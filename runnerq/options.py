"""``ActivityOption``: how one activity is to run, kept apart from its payload."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from .durations import Duration, seconds
from .errors import ConfigurationError
from .priority import ActivityPriority

__all__ = ["MAX_LIMIT_KEY", "ActivityOption"]

MAX_LIMIT_KEY = 200


@dataclass(frozen=True, slots=True, init=False)
class ActivityOption:
    """Options for one activity; every field is optional.

    ``max_retries`` and ``timeout`` left as ``None`` take the queue's defaults when the
    activity runs. ``delay`` or ``run_at`` (an aware datetime) schedule it for later.
    ``timeout`` and ``delay`` take seconds or a ``datetime.timedelta`` and are kept as seconds.
    A second enqueue with the same ``idempotency_key`` returns the first activity.
    ``limit_key`` (a tenant, a customer: 1-200 characters, no tab) is what the queue's
    per-key limits count this activity against (docs/limits.md).
    """

    priority: ActivityPriority
    max_retries: int | None
    timeout: float | None
    delay: float | None
    run_at: dt.datetime | None
    metadata: dict[str, Any]
    idempotency_key: str | None
    limit_key: str | None

    def __init__(
        self,
        priority: ActivityPriority = ActivityPriority.NORMAL,
        max_retries: int | None = None,
        timeout: Duration | None = None,
        delay: Duration | None = None,
        run_at: dt.datetime | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        limit_key: str | None = None,
    ) -> None:
        if not isinstance(priority, ActivityPriority):  # a name, from untyped code
            priority = ActivityPriority.parse(priority)
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            raise ConfigurationError(f"max_retries must be an integer >= 0, not {max_retries!r}")
        timeout_s = None if timeout is None else seconds(timeout)
        if timeout is not None and (timeout_s is None or timeout_s <= 0):
            raise ConfigurationError(
                f"timeout must be a number of seconds or a timedelta > 0, not {timeout!r}"
            )
        delay_s = None if delay is None else seconds(delay)
        if delay is not None and (delay_s is None or delay_s < 0):
            raise ConfigurationError(
                f"delay must be a number of seconds or a timedelta >= 0, not {delay!r}"
            )
        if delay is not None and run_at is not None:
            raise ConfigurationError("give delay or run_at, not both")
        if run_at is not None and (not isinstance(run_at, dt.datetime) or run_at.tzinfo is None):
            raise ConfigurationError("run_at must be a timezone-aware datetime")
        if metadata is None:
            metadata = {}
        elif not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
            raise ConfigurationError("metadata must be a dict with string keys")
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not idempotency_key
        ):
            raise ConfigurationError("idempotency_key must be a non-empty string")
        if limit_key is not None and (
            not isinstance(limit_key, str)
            or not 0 < len(limit_key) <= MAX_LIMIT_KEY
            or "\t" in limit_key
        ):
            raise ConfigurationError(
                f"limit_key must be a string of 1-{MAX_LIMIT_KEY} characters with no tab,"
                f" not {limit_key!r}"
            )
        setattr_ = object.__setattr__
        setattr_(self, "priority", priority)
        setattr_(self, "max_retries", max_retries)
        setattr_(self, "timeout", timeout_s)
        setattr_(self, "delay", delay_s)
        setattr_(self, "run_at", run_at)
        setattr_(self, "metadata", metadata)
        setattr_(self, "idempotency_key", idempotency_key)
        setattr_(self, "limit_key", limit_key)
