"""Handlers: the ``ActivityHandler`` protocol, plain async functions, and the registry."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from .context import ActivityContext
from .errors import ConfigurationError, DuplicateHandlerError

__all__ = ["ActivityHandler", "HandlerFunc", "HandlerRegistry"]

HandlerFunc = Callable[[Any, ActivityContext], Awaitable[Any]]


@runtime_checkable
class ActivityHandler(Protocol):
    """An object that runs one activity type.

    ``handle`` returns a JSON value (or ``None``) as the activity's result; see
    ``runnerq.errors`` for what raising does.
    """

    async def handle(self, payload: Any, ctx: ActivityContext) -> Any: ...

    def activity_type(self) -> str: ...


class HandlerRegistry:
    """Activity type -> handler function. One handler per type."""

    def __init__(self) -> None:
        self._handlers: dict[str, HandlerFunc] = {}

    def register(
        self,
        activity_type: str | ActivityHandler,
        handler: ActivityHandler | HandlerFunc | None = None,
    ) -> None:
        if not isinstance(activity_type, str):
            handler, activity_type = activity_type, activity_type.activity_type()
        if not isinstance(activity_type, str) or not activity_type:
            raise ConfigurationError(
                f"activity type must be a non-empty string, not {activity_type!r}"
            )
        if handler is None:
            raise ConfigurationError(f"no handler given for activity type {activity_type!r}")
        if activity_type in self._handlers:
            raise DuplicateHandlerError(f"a handler for {activity_type!r} is already registered")
        self._handlers[activity_type] = _as_function(activity_type, handler)

    def get(self, activity_type: str) -> HandlerFunc | None:
        return self._handlers.get(activity_type)

    def __contains__(self, activity_type: object) -> bool:
        return activity_type in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))

    def __len__(self) -> int:
        return len(self._handlers)


def _as_function(activity_type: str, handler: ActivityHandler | HandlerFunc) -> HandlerFunc:
    method = getattr(handler, "handle", None)
    if method is not None and inspect.iscoroutinefunction(method):
        return method  # type: ignore[no-any-return]
    if inspect.iscoroutinefunction(handler):
        return handler
    raise ConfigurationError(
        f"handler for {activity_type!r} must be an async function (payload, ctx) or an object"
        f" with an async handle(payload, ctx) method, not {handler!r}"
    )
