"""A handler's ``RateLimitedError``: a ``Throttled`` acknowledgement, no retry used."""

from __future__ import annotations

import datetime as dt

import pytest

import runnerq
from runnerq.config import BackoffPolicy
from runnerq.errors import ConfigurationError, RateLimitedError
from runnerq.outcome import Throttled, raised
from runnerq.record import ActivityRecord


def _record(retry_count: int) -> ActivityRecord:
    return ActivityRecord("a", "email", 1, retry_count=retry_count, created_at=5.0)


def test_rate_limited_goes_back_without_a_retry_even_when_none_are_left() -> None:
    ack = raised(_record(3), "tok", RateLimitedError(2.5), 3, BackoffPolicy(), 9.0)
    assert ack == Throttled("a", "tok", 2.5, "h:email")
    by_key = RateLimitedError(1, hold="key")
    no_key = raised(_record(0), "t", by_key, 3, BackoffPolicy(), 9.0)
    assert isinstance(no_key, Throttled) and no_key.hold == "h:email"  # no key: its type
    keyed = raised(
        ActivityRecord("a", "email", 1, limit_key="k1"), "t", by_key, 3, BackoffPolicy(), 9.0
    )
    assert isinstance(keyed, Throttled) and keyed.hold == "hk:k1"
    only_this = RateLimitedError(dt.timedelta(milliseconds=250), "429", hold="activity")
    assert raised(_record(0), "tok", only_this, 0, BackoffPolicy(), 9.0) == Throttled(
        "a", "tok", 0.25, None
    )
    assert str(only_this) == "429"
    assert str(RateLimitedError(1)) == "rate limited: retry after 1s"


@pytest.mark.parametrize("after", [-1, float("nan"), float("inf"), "5", True])
def test_a_bad_retry_after_is_a_configuration_error(after: object) -> None:
    with pytest.raises(ConfigurationError, match="retry_after must be"):
        RateLimitedError(after)  # type: ignore[arg-type]


def test_a_bad_hold_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="hold must be 'type', 'key' or 'activity'"):
        RateLimitedError(1, hold="tenant")  # type: ignore[arg-type]


def test_it_is_public_and_an_activity_error() -> None:
    assert runnerq.RateLimitedError is RateLimitedError
    assert issubclass(RateLimitedError, runnerq.ActivityError)
    assert "activity_throttled" in runnerq.metrics.COUNTERS
