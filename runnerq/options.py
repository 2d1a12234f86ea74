"""``ActivityOption``: how one activity is to run, kept apart from its payload."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError
from .priority import ActivityPriority

__all__ = ["ActivityOption"]


@dataclass(frozen=True, slots=True)
class ActivityOption:
    """Options for one activity; every field is optional.

    ``max_retries`` and ``timeout`` (seconds) left as ``None`` take the queue's defaults when
    the activity runs. ``delay`` (seconds) or ``run_at`` (an aware datetime) schedule it for
    later. A second enqueue with the same ``idempotency_key`` returns the first activity.
    """

    priority: ActivityPriority = ActivityPriority.NORMAL
    max_retries: int | None = None
    timeout: float | None = None
    delay: float | None = None
    run_at: dt.datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.priority, ActivityPriority):
            object.__setattr__(self, "priority", ActivityPriority.parse(self.priority))
        if self.max_retries is not None and (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ConfigurationError(
                f"max_retries must be an integer >= 0, not {self.max_retries!r}"
            )
        if self.timeout is not None and (not _number(self.timeout) or self.timeout <= 0):
            raise ConfigurationError(
                f"timeout must be a number of seconds > 0, not {self.timeout!r}"
            )
        if self.delay is not None and (not _number(self.delay) or self.delay < 0):
            raise ConfigurationError(f"delay must be a number of seconds >= 0, not {self.delay!r}")
        if self.delay is not None and self.run_at is not None:
            raise ConfigurationError("give delay or run_at, not both")
        if self.run_at is not None and (
            not isinstance(self.run_at, dt.datetime) or self.run_at.tzinfo is None
        ):
            raise ConfigurationError("run_at must be a timezone-aware datetime")
        if not isinstance(self.metadata, dict) or not all(
            isinstance(k, str) for k in self.metadata
        ):
            raise ConfigurationError("metadata must be a dict with string keys")
        if self.idempotency_key is not None and (
            not isinstance(self.idempotency_key, str) or not self.idempotency_key
        ):
            raise ConfigurationError("idempotency_key must be a non-empty string")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
