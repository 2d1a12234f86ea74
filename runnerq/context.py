"""What a handler gets besides its payload: ``ActivityContext`` and its ``CancelToken``."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .history import progress_args
from .priority import ActivityPriority

if TYPE_CHECKING:
    from .client import ActivityClient
    from .progress import ProgressReporter

__all__ = ["ActivityContext", "CancelToken"]


class CancelToken:
    """Set when the activity is cancelled, its lease is lost, or the worker shuts down.

    ``token.is_cancelled()`` to check, ``await token`` (or ``await token.wait()``) to wait.
    The handler's task is cancelled as well; the token lets cleanup code find out why.
    """

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None  # made on first wait: most are never awaited
        self.reason: str | None = None

    def is_cancelled(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str = "cancelled") -> None:
        if self.reason is None:
            self.reason = reason
            if self._event is not None:
                self._event.set()

    def _waitable(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
            if self.reason is not None:
                self._event.set()
        return self._event

    async def wait(self) -> None:
        await self._waitable().wait()

    def __await__(self) -> Generator[Any, None, bool]:
        return self._waitable().wait().__await__()


@dataclass(slots=True)  # not frozen: made for every activity, and frozen costs double
class ActivityContext:
    """The running activity's identity and options, and a way to enqueue more activities."""

    activity_id: str
    activity_type: str
    retry_count: int
    max_retries: int
    priority: ActivityPriority
    metadata: dict[str, Any]
    activity_executor: ActivityClient
    cancel_token: CancelToken = field(default_factory=CancelToken)
    # The lease token, for progress writes; the reporter is made on the first report.
    lease_token: str = field(default="", repr=False)
    _progress: ProgressReporter | None = field(default=None, repr=False)

    def is_cancelled(self) -> bool:
        return self.cancel_token.is_cancelled()

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the activity got: ``fraction`` from 0 to 1 and an optional message
        (docs/history.md). Readable from ``ActivityFuture.progress()`` while it runs and after.
        Writes are coalesced to one per ``PROGRESS_INTERVAL`` (0.15 s) per activity, the last
        value winning; the last one is written before the activity's outcome. ``ValueError``
        for a fraction outside 0..1, ``TypeError`` for a non-number or a non-string message.
        """
        args = progress_args(fraction, message)
        reporter = self._progress
        if reporter is None:
            if not self.lease_token:
                return  # not run by a worker (a handler called directly): nowhere to write
            from .progress import ProgressReporter

            store = self.activity_executor.store
            reporter = self._progress = ProgressReporter(store, self.activity_id, self.lease_token)
        await reporter.report(args)
