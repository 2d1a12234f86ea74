"""``outcome``: what one run of an activity comes to, decided without I/O."""

from __future__ import annotations

import asyncio

from runnerq.config import BackoffPolicy
from runnerq.errors import ActivityError
from runnerq.outcome import Complete, DeadLetter, Retry, completed, describe, failed, raised
from runnerq.record import ActivityRecord

NO_JITTER = BackoffPolicy(base=1.0, factor=2.0, cap=300.0, jitter=0.0)


def _record(retry_count: int = 0, payload: object = 1) -> ActivityRecord:
    return ActivityRecord("a", "t", payload, retry_count=retry_count, created_at=5.0)


def test_a_json_result_completes() -> None:
    ack = completed(_record(), "tok", {"ok": [1, 2]}, 9.0)
    doc = '{"status":"completed","lease":"tok","result":{"ok":[1,2]}}'
    assert ack == Complete("a", "tok", doc)
    assert ack.history is False  # a first try with no progress: no history key is sent


def test_a_completion_known_to_have_a_history_sends_its_key() -> None:
    """A retried activity has a history list; one that reported progress gets one."""
    retried = completed(_record(retry_count=1), "tok", 1, 9.0)
    progressed = completed(_record(), "tok", 1, 9.0, progressed=True)
    assert isinstance(retried, Complete) and retried.history
    assert isinstance(progressed, Complete) and progressed.history


def test_a_result_that_is_not_json_is_dead_lettered_as_bad_result() -> None:
    for result in (object(), float("nan"), {"x": {1}}, "lone \udcff surrogate"):
        ack = completed(_record(), "tok", result, 9.0)
        assert isinstance(ack, DeadLetter)
        assert (ack.reason, ack.entry.failed_at) == ("bad_result", 9.0)
        assert ack.entry.record == _record()


def test_a_failure_with_retries_left_is_retried_with_the_attempt_counted() -> None:
    ack = raised(_record(retry_count=1), "tok", ValueError("boom"), 3, NO_JITTER, 9.0)
    assert isinstance(ack, Retry)
    assert ack.delay == 2.0  # base * factor ** (2 - 1)
    again = ActivityRecord.decode(ack.record_json)
    assert (again.retry_count, again.last_error) == (2, "ValueError: boom")


def test_retries_exhausted_and_non_retryable_and_timeouts() -> None:
    exhausted = raised(_record(retry_count=3), "tok", ValueError("boom"), 3, NO_JITTER, 9.0)
    assert isinstance(exhausted, DeadLetter) and exhausted.reason == "retries_exhausted"
    assert exhausted.entry.record is not None
    assert exhausted.entry.record.last_error == "ValueError: boom"
    fatal = raised(_record(), "tok", ActivityError.non_retry("no"), 3, NO_JITTER, 9.0)
    assert isinstance(fatal, DeadLetter) and fatal.reason == "non_retryable"
    assert fatal.entry.error == "no"
    late = failed(_record(retry_count=3), "tok", "timed out", True, 3, "timeout", NO_JITTER, 9.0)
    assert isinstance(late, DeadLetter) and late.reason == "timeout"


def test_a_record_that_cannot_be_written_again_is_dead_lettered_as_corrupt() -> None:
    ack = raised(_record(payload=float("nan")), "tok", ValueError("boom"), 3, NO_JITTER, 9.0)
    assert isinstance(ack, DeadLetter)
    assert ack.reason == "corrupt"
    assert "boom" in ack.entry.error and "not JSON" in ack.entry.error


def test_describe_whatever_the_exception_does() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe(ValueError("x")) == "ValueError: x"
    assert describe(asyncio.CancelledError()) == "CancelledError"
    assert describe(Unprintable()) == "Unprintable: <the exception could not be turned into text>"
    assert describe(ValueError("\udcff")) == "ValueError: \ufffd"  # writable as UTF-8
