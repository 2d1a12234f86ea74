"""Poll with a deadline instead of sleeping for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 60.0
POLL_INTERVAL_SECONDS = 0.2


def wait_for(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> T:
    """Call ``probe`` until it returns something other than None/False, and return that.

    Raises AssertionError naming ``what`` and the last value seen when ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None and last is not False:
            return last
        time.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
