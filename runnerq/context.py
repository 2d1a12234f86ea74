"""What a handler gets besides its payload: ``ActivityContext`` and its ``CancelToken``."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .priority import ActivityPriority

if TYPE_CHECKING:
    from .client import ActivityClient

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

    def is_cancelled(self) -> bool:
        return self.cancel_token.is_cancelled()
