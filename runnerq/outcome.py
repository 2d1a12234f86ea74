"""What one run of an activity comes to: the acknowledgement a worker sends for it.

Pure functions decide it from the record and what the handler did (returned a value, raised,
ran past its timeout); the worker sends it (``acks.AckBatcher``). One small class per kind:

* ``Complete``: the result document to store;
* ``Retry``: the record with one more attempt counted, and when to run it again;
* ``DeadLetter``: the dead-letter entry (the record, or the raw text of a corrupt one);
* ``Throttled``: the handler raised ``RateLimitedError``: back after its delay, no retry
  used, and the type or key to hold back meanwhile (docs/limits.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import BackoffPolicy
from .errors import NonRetryableError, RateLimitedError, SerializationError
from .record import (
    ActivityRecord,
    DeadLetterEntry,
    ResultDocument,
    encode_json,
    readable,
)

__all__ = [
    "Ack",
    "Complete",
    "DeadLetter",
    "Retry",
    "Throttled",
    "completed",
    "dead_letter",
    "describe",
    "failed",
    "raised",
]


@dataclass(slots=True)
class Complete:
    activity_id: str
    token: str
    document: str  # the result document's JSON
    # Send its history key (docs/history.md): it is known to have a history list (it was
    # retried) or progress. One sent without it that has a list is handed back by the script
    # and sent again with it.
    history: bool = False


@dataclass(slots=True)
class Retry:
    activity_id: str
    token: str
    record_json: str  # the record with the attempt counted and its error
    delay: float  # seconds until it runs again
    error: str = ""  # for the activity's history (docs/history.md)
    attempt: int = 0  # the attempt that failed, from 1


@dataclass(slots=True)
class DeadLetter:
    activity_id: str
    token: str
    entry: DeadLetterEntry

    @property
    def reason(self) -> str:
        return self.entry.reason


@dataclass(slots=True)
class Throttled:
    activity_id: str
    token: str
    delay: float  # seconds until it runs again
    # What is held back for as long on every worker: "h:<type>", "hk:<limit key>" or None.
    hold: str | None


Ack = Complete | Retry | DeadLetter | Throttled


def completed(
    record: ActivityRecord,
    token: str,
    result: object,
    now: float,
    progressed: bool = False,
    keep_lease: bool = True,
) -> Ack:
    """The handler returned ``result``: complete, or dead-lettered (``bad_result``) when it
    is not JSON. ``progressed``: the handler reported progress; ``keep_lease``: the result
    keeps the lease token (``QueueSettings.claim_history``)."""
    try:
        result_json = encode_json(result, "the handler's result")
    except SerializationError as exc:
        return dead_letter(record.id, token, str(exc), "bad_result", now, record)
    document = ResultDocument.completed_json(result_json, token if keep_lease else None)
    return Complete(record.id, token, document, progressed or record.retry_count > 0)


def raised(
    record: ActivityRecord,
    token: str,
    exc: BaseException,
    max_retries: int,
    backoff: BackoffPolicy,
    now: float,
) -> Ack:
    """The handler raised ``exc``: retried while retries remain, unless it is a
    ``NonRetryableError`` (dead-lettered at once) or a ``RateLimitedError`` (throttled: back
    after its ``retry_after``, no retry used)."""
    if isinstance(exc, RateLimitedError):
        hold: str | None = None
        if exc.hold == "key" and record.limit_key is not None:
            hold = f"hk:{record.limit_key}"
        elif exc.hold != "activity":
            hold = f"h:{record.activity_type}"
        return Throttled(record.id, token, exc.retry_after, hold)
    if isinstance(exc, NonRetryableError):
        return failed(
            record, token, readable(str(exc)), False, max_retries, "non_retryable", backoff, now
        )
    return failed(record, token, describe(exc), True, max_retries, "failed", backoff, now)


def failed(
    record: ActivityRecord,
    token: str,
    error: str,
    retryable: bool,
    max_retries: int,
    reason: str,
    backoff: BackoffPolicy,
    now: float,
) -> Ack:
    """A failed attempt (``reason``: failed, timeout, non_retryable): a retry after the
    backoff while retries remain and the error is retryable, else a dead letter
    (``retries_exhausted`` for a plain failure)."""
    if retryable and record.retry_count < max_retries:
        updated = record.retried(error)
        try:
            record_json = updated.encode()
        except SerializationError as exc:  # the record itself cannot be written again
            return dead_letter(record.id, token, f"{error}; {exc}", "corrupt", now)
        return Retry(
            record.id,
            token,
            record_json,
            backoff.delay(record.retry_count + 1),
            error,
            record.retry_count + 1,
        )
    if retryable and reason == "failed":
        reason = "retries_exhausted"
    return dead_letter(
        record.id, token, error, reason, now, dataclasses.replace(record, last_error=error)
    )


def dead_letter(
    activity_id: str,
    token: str,
    error: str,
    reason: str,
    now: float,
    record: ActivityRecord | None = None,
    raw: str | None = None,
) -> DeadLetter:
    return DeadLetter(
        activity_id, token, DeadLetterEntry(activity_id, error, reason, now, record, raw)
    )


def describe(exc: BaseException) -> str:
    """``Type: message`` for an exception, whatever its ``__str__`` does."""
    try:
        text = readable(str(exc))
    except Exception:
        text = "<the exception could not be turned into text>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
