"""``ActivityFuture``: the live handle of one enqueued activity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ActivityCancelledError,
    ActivityDeadLetteredError,
    ActivityTimedOutError,
    ResultTimeoutError,
)

if TYPE_CHECKING:
    from .client import ActivityClient
    from .history import Progress

__all__ = ["ActivityFuture"]


class ActivityFuture:
    """Await the activity's result, or cancel it. Cheap to create: it holds only an id."""

    __slots__ = ("_client", "activity_id", "created")

    def __init__(self, client: ActivityClient, activity_id: str, created: bool = True) -> None:
        self._client = client
        self.activity_id = activity_id
        # False when an idempotency key matched an earlier activity: this is that one.
        self.created = created

    def __repr__(self) -> str:
        return f"<ActivityFuture {self.activity_id}>"

    async def get_result(self, timeout: float | None = None) -> Any:
        """The handler's return value, once the activity completed.

        Raises ``ActivityDeadLetteredError`` (``ActivityTimedOutError`` when its last attempt
        timed out), ``ActivityCancelledError``, ``ActivityNotFoundError`` when there is no such
        activity (or its result expired), and ``ResultTimeoutError`` when ``timeout`` seconds
        pass first (the activity itself goes on).
        """
        try:
            doc = await self._client._results.wait(self.activity_id, timeout)
        except TimeoutError:
            raise ResultTimeoutError(self.activity_id, timeout or 0.0) from None
        if doc.status == "completed":
            return doc.result
        if doc.status == "cancelled":
            raise ActivityCancelledError(self.activity_id)
        error = doc.error or "unknown error"
        reason = doc.reason or "failed"
        if reason == "timeout":
            raise ActivityTimedOutError(self.activity_id, error, reason)
        raise ActivityDeadLetteredError(self.activity_id, error, reason)

    async def progress(self) -> Progress | None:
        """What the activity's handler last reported (``ctx.progress``), while it runs and
        after it ended (as long as its history is kept); None when it reported nothing."""
        return await self._client.get_progress(self.activity_id)

    async def cancel(self) -> bool:
        """Cancel the activity if it has not finished; True if this call cancelled it."""
        return await self._client.cancel(self.activity_id)
