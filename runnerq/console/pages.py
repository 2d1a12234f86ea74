"""Cursor pagination over a sorted set: pages that cost the same at the millionth entry as
at the first.

A page after the cursor's entry (score, id) is read by the entry's rank when it is still in
the set with that score (``ZSCORE`` + ``ZRANK``, then ``ZRANGE`` by rank: O(log N + page)).
When it has left the set meanwhile (claimed, requeued, expired), the page starts at its score
(``ZRANGE BYSCORE ... LIMIT``) and skips the entries of the same score that sort before it:
at most ``TIE_BUDGET`` of them, past which the page goes on from the next score. Never an
offset into the set, never the whole set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

__all__ = ["TIE_BUDGET", "Window", "zpage"]

TIE_BUDGET = 10_000


@dataclass(frozen=True, slots=True)
class Window:
    """The scores a list shows: ``low <= score < high``."""

    low: float = -math.inf
    high: float = math.inf

    def holds(self, score: float) -> bool:
        return self.low <= score < self.high

    def low_arg(self, score: float | None = None) -> str:
        value = self.low if score is None else score
        return "-inf" if value == -math.inf else _num(value)

    def high_arg(self, score: float | None = None) -> str:
        """The upper bound (exclusive) for ZRANGE BYSCORE, or ``score`` inclusive."""
        if score is not None:
            return _num(score)
        return "+inf" if self.high == math.inf else f"({_num(self.high)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


Row = tuple[str, float]


async def zpage(
    redis: aioredis.Redis,
    key: str,
    window: Window,
    descending: bool,
    after: Row | None,
    limit: int,
) -> tuple[list[Row], bool]:
    """Up to ``limit`` (id, score) entries of ``key`` in ``window``, in score order (highest
    first when ``descending``), after the entry ``after``; and whether more follow."""
    want = limit + 1
    if after is None:
        rows = await _by_score(redis, key, window, descending, None, 0, want)
    else:
        member, score = after
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zscore(key, member)
            if descending:
                pipe.zrevrank(key, member)
            else:
                pipe.zrank(key, member)
            current, rank = await pipe.execute()
        if current is not None and rank is not None and float(current) == score:
            raw: Any = await redis.zrange(
                key, rank + 1, rank + want, desc=descending, withscores=True
            )
            rows = []
            for m, s in raw:
                if not window.holds(float(s)):
                    break
                rows.append((str(m), float(s)))
        else:
            rows = await _after_gone(redis, key, window, descending, member, score, want)
    return rows[:limit], len(rows) > limit


async def _by_score(
    redis: aioredis.Redis,
    key: str,
    window: Window,
    descending: bool,
    start: float | None,
    offset: int,
    count: int,
) -> list[Row]:
    """``count`` entries from ``start`` (inclusive; None: the window's edge)."""
    raw: Any
    if descending:
        high, low = window.high_arg(start), window.low_arg()
        raw = await redis.zrange(
            key, high, low, desc=True, byscore=True, offset=offset, num=count, withscores=True
        )
    else:
        low, high = window.low_arg(start), window.high_arg()
        raw = await redis.zrange(
            key, low, high, byscore=True, offset=offset, num=count, withscores=True
        )
    return [(str(m), float(s)) for m, s in raw]


async def _after_gone(
    redis: aioredis.Redis,
    key: str,
    window: Window,
    descending: bool,
    member: str,
    score: float,
    want: int,
) -> list[Row]:
    """The entries after (member, score) when that entry is no longer in the set."""
    if not window.holds(score):
        return []
    offset, skipped = 0, 0
    chunk = max(want, 1000)
    while skipped < TIE_BUDGET:
        rows = await _by_score(redis, key, window, descending, score, offset, chunk)
        kept = [(m, s) for m, s in rows if s != score or (m < member if descending else m > member)]
        if kept or len(rows) < chunk:
            tail: list[Row] = []
            if len(kept) < want and len(rows) == chunk:  # the chunk ended inside the page
                tail = await _by_score(redis, key, window, descending, score, offset + chunk, want)
            return (kept + tail)[:want]
        offset += chunk
        skipped += chunk
    # Too many entries share this score: go on from the next one.
    step = math.nextafter(score, -math.inf if descending else math.inf)
    return await _by_score(redis, key, window, descending, step, 0, want)
