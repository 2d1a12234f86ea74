"""``Backoff``: the pause a worker's loop takes after an error before it tries again."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import NoScriptError

from .connection import REDIS_ERRORS

__all__ = ["MAX_BACKOFF", "Backoff", "expected_error"]

log = logging.getLogger("runnerq.worker")

MAX_BACKOFF = 5.0
_FIRST = 0.05


_EXPECTED = (*REDIS_ERRORS, NoScriptError, TimeoutError)


def expected_error(exc: BaseException) -> bool:
    """Redis away, slow or restarted (it forgot the scripts): what a loop waits out. Anything
    else is a bug or bad data, logged with its traceback."""
    return isinstance(exc, _EXPECTED)


class Backoff:
    """Doubling pauses after errors, from 50 ms up to ``MAX_BACKOFF``; cut short when
    ``stop`` is set."""

    def __init__(self, stop: asyncio.Event | None = None) -> None:
        self.delay = _FIRST
        self._stop = stop

    async def sleep(self, what: str, exc: BaseException) -> None:
        if expected_error(exc):
            log.warning(
                "%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, self.delay
            )
        else:
            log.error("%s failed unexpectedly; retrying in %.2fs", what, self.delay, exc_info=exc)
        if self._stop is None:
            await asyncio.sleep(self.delay)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay):
                    await self._stop.wait()
        self.delay = min(self.delay * 2, MAX_BACKOFF)

    def reset(self) -> None:
        self.delay = _FIRST
