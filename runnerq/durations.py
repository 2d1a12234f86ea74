"""Durations: whatever takes a length of time takes seconds (an int or a float) or a
``datetime.timedelta``, as Runner-Q takes ``Duration`` values. ``seconds`` turns either into
seconds once, where the value comes in (an option, a setting, a builder call); past that edge
every duration is a number of seconds.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TypeAlias

__all__ = ["Duration", "seconds"]

# Seconds (an int or a float, not a bool) or a timedelta.
Duration: TypeAlias = float | dt.timedelta


def seconds(value: object) -> float | None:
    """``value`` in seconds: a number as it is (an int stays an int), a timedelta as its total
    seconds; ``None`` for anything else (a bool, a string, NaN, an infinity), which the caller
    refuses with its own message."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return None
