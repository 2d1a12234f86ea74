"""What the console and callers read about activities beyond their state: each activity's
event history, the progress its handler reports, and the queue's per-minute throughput.

The scripts write all three in the same atomic step as each transition (docs/history.md);
this module holds the typed values and the pure encoding and decoding around them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ERROR_CHARS",
    "HISTORY_CAP",
    "ActivityEvent",
    "Progress",
    "Throughput",
    "compose_events",
    "dead_letter_tail",
    "failed_tail",
    "last_progress",
    "lease_of",
    "parse_events",
    "parse_progress",
    "progress_args",
    "result_events",
    "throughput",
]

# Events kept per activity (the scripts' HISTORY_CAP, _prelude.lua).
HISTORY_CAP = 50
# Error text kept in an event, at most (the dead-letter entry keeps all of it).
ERROR_CHARS = 500
# Message text kept with a progress report, at most.
MESSAGE_CHARS = 500
# Per-minute counts kept (a day).
MINUTES_KEPT = 1440


@dataclass(frozen=True, slots=True)
class Progress:
    """What a handler last reported: ``fraction`` from 0 to 1, an optional ``message``, and
    when (epoch seconds, Redis time)."""

    fraction: float
    message: str | None
    at: float

    @classmethod
    def from_doc(cls, doc: Any) -> Progress | None:
        if not isinstance(doc, dict):
            return None
        f, m, t = doc.get("f"), doc.get("m"), doc.get("t")
        if not isinstance(f, int | float) or not isinstance(t, int | float):
            return None
        return cls(float(f), m if isinstance(m, str) else None, t / 1000.0)


@dataclass(frozen=True, slots=True)
class ActivityEvent:
    """One step in an activity's life, oldest first in ``ActivityClient.get_events``.

    ``kind``: enqueued, claimed, failed, retry, lease_lost, completed, dead_lettered,
    cancelled, requeued, throttled or released. ``at`` is epoch seconds by Redis's clock;
    ``worker`` the worker id (claimed, failed, lease_lost, completed, dead_lettered,
    throttled, released); ``attempt`` the attempt (from 1; failed and dead_lettered);
    ``error`` (failed, dead_lettered; at most ``ERROR_CHARS`` characters); ``reason``
    (dead_lettered); ``retry_at`` (retry, throttled: when it runs again, epoch seconds);
    ``progress`` the last progress its handler reported in the attempt this event ends.
    """

    kind: str
    at: float
    worker: str | None = None
    attempt: int | None = None
    error: str | None = None
    reason: str | None = None
    retry_at: float | None = None
    progress: Progress | None = None

    @classmethod
    def from_doc(cls, doc: Any) -> ActivityEvent | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("e"), str):
            return None
        t = doc.get("t")
        if not isinstance(t, int | float):
            return None
        w, n, err, why, at = (doc.get(k) for k in ("w", "n", "err", "reason", "at"))
        return cls(
            kind=doc["e"],
            at=t / 1000.0,
            worker=w if isinstance(w, str) else None,
            attempt=n if isinstance(n, int) else None,
            error=err if isinstance(err, str) else None,
            reason=why if isinstance(why, str) else None,
            retry_at=at / 1000.0 if isinstance(at, int | float) else None,
            progress=Progress.from_doc(doc.get("p")),
        )


def _text(value: str, limit: int) -> str:
    return json.dumps(value[:limit] + ("..." if len(value) > limit else ""))


def failed_tail(attempt: int, error: str) -> str:
    """The "failed" event's own fields, as retry.lua appends them."""
    return f',"n":{int(attempt)},"err":{_text(error, ERROR_CHARS)}'


def dead_letter_tail(attempt: int | None, reason: str, error: str) -> str:
    """The "dead_lettered" event's own fields, as dead_letter.lua appends them."""
    head = "" if attempt is None else f',"n":{int(attempt)}'
    return f'{head},"reason":{_text(reason, 100)},"err":{_text(error, ERROR_CHARS)}'


def progress_args(fraction: float, message: str | None) -> tuple[str, str]:
    """progress.lua's ARGV[3] and ARGV[4]; ``ValueError`` unless 0 <= fraction <= 1 and the
    message is a string or None."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"progress fraction must be a number, not {type(fraction).__name__}")
    if not math.isfinite(fraction) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress fraction must be from 0 to 1, not {fraction!r}")
    if message is not None and not isinstance(message, str):
        raise TypeError(f"progress message must be a string or None, not {type(message).__name__}")
    text = "null" if message is None else _text(message, MESSAGE_CHARS)
    return repr(float(fraction)), text


def parse_progress(raw: str | bytes | None) -> Progress | None:
    if raw is None:
        return None
    try:
        return Progress.from_doc(json.loads(raw))
    except ValueError:
        return None


def parse_events(raws: list[Any]) -> list[ActivityEvent]:
    """Events as stored, oldest first; what cannot be read is left out."""
    out = []
    for raw in raws:
        try:
            event = ActivityEvent.from_doc(json.loads(raw))
        except ValueError:
            continue
        if event is not None:
            out.append(event)
    return out


@dataclass(frozen=True, slots=True)
class Throughput:
    """A queue's completed and failed attempts (failed includes dead-lettered) per minute,
    from its bounded per-minute history: totals over the last hour and day, and the series
    of the last ``len(minutes)`` minutes (epoch minute, completed, failed), oldest first,
    minutes with nothing done included."""

    completed_hour: int
    failed_hour: int
    completed_day: int
    failed_day: int
    minutes: list[tuple[int, int, int]]


def throughput(raw: dict[str, str], now_minute: int, series: int = 60) -> Throughput:
    """``Throughput`` from the minutes hash (field "<epoch minute>:c" or ":f" -> count)."""
    counts: dict[int, list[int]] = {}
    for name, value in raw.items():
        minute, _, kind = str(name).partition(":")
        if kind not in ("c", "f") or not minute.isdigit():
            continue
        try:
            n = int(value)
        except ValueError:
            continue
        counts.setdefault(int(minute), [0, 0])[0 if kind == "c" else 1] += n

    def total(span: int, i: int) -> int:
        return sum(c[i] for m, c in counts.items() if now_minute - span < m <= now_minute)

    return Throughput(
        completed_hour=total(60, 0),
        failed_hour=total(60, 1),
        completed_day=total(MINUTES_KEPT, 0),
        failed_day=total(MINUTES_KEPT, 1),
        minutes=[
            (m, counts.get(m, [0, 0])[0], counts.get(m, [0, 0])[1])
            for m in range(now_minute - series + 1, now_minute + 1)
        ],
    )


def lease_of(token: str) -> tuple[str, float | None]:
    """The worker id in a lease token and when the claim took it (epoch seconds; None for a
    token from before the history): "<worker id>:<seq>@<ms>" or "<worker id>:~<seq>@<ms>"."""
    head, at, ms = token.rpartition("@")
    if not at or not ms.isdigit():
        head, ms = token, ""
    worker = head.rpartition(":")[0] or head
    return worker, (int(ms) / 1000.0 if ms else None)


def result_events(result_json: str | None, completed_ms: int | None) -> list[ActivityEvent]:
    """ "claimed" and "completed" of an activity that completed with no history list (most:
    complete.lua writes nothing for them): the claim from the lease token in its result
    document, the completion at ``completed_ms`` (from the queue's `done` set)."""
    if result_json is None:
        return []
    try:
        doc = json.loads(result_json)
    except ValueError:
        return []
    if not isinstance(doc, dict) or doc.get("status") != "completed":
        return []
    lease = doc.get("lease")  # (none when the queue's claim_history is off)
    worker, claimed_at = lease_of(lease) if isinstance(lease, str) else (None, None)
    out = []
    if claimed_at is not None:
        out.append(ActivityEvent("claimed", claimed_at, worker))
    if completed_ms is not None:
        out.append(ActivityEvent("completed", completed_ms / 1000.0, worker))
    return out


def compose_events(
    raws: list[str],
    token: str | None,
    record_json: str | None,
    result_json: str | None = None,
    completed_ms: int | None = None,
) -> list[ActivityEvent]:
    """An activity's events, oldest first: "enqueued" from its record's ``created_at`` when
    the record is still stored (pending, scheduled, running, or in the dead-letter queue: the
    enqueue writes no event, docs/history.md), the stored events, the claim and completion
    of one that completed with no list (``result_events``), and "claimed" for the lease held
    now (from its lease ``token``), which the list gets when the lease ends.
    """
    events = []
    if record_json is not None:
        try:
            created = json.loads(record_json).get("created_at")
        except (ValueError, AttributeError):
            created = None
        if isinstance(created, int | float) and created > 0:
            events.append(ActivityEvent("enqueued", float(created)))
    stored = parse_events(list(raws))
    events += stored
    if not any(e.kind == "completed" for e in stored):
        events += result_events(result_json, completed_ms)
    if token is not None:
        worker, claimed_at = lease_of(token)
        if claimed_at is not None:
            events.append(ActivityEvent("claimed", claimed_at, worker))
    return events


def last_progress(live: str | None, last_event: str | None) -> Progress | None:
    """The running attempt's progress, else the one kept with the last event."""
    if live is not None:
        return parse_progress(live)
    events = parse_events([last_event]) if last_event is not None else []
    return events[0].progress if events else None
