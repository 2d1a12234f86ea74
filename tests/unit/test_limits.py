"""The limits model: strict checks, and a JSON form that round-trips."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from runnerq import ConfigurationError, KeyLimit, Limits, LimitStats, Rate, TypeLimit


def test_rate_defaults_its_burst_to_its_limit_and_takes_a_timedelta() -> None:
    assert Rate(50) == Rate(50, 1.0, 50)
    assert Rate(10, dt.timedelta(minutes=1), burst=2).period == 60.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0,), "rate limit must be a whole number >= 1, not 0"),
        ((-5,), "rate limit must be a whole number >= 1, not -5"),
        ((1.5,), "rate limit must be a whole number >= 1"),
        ((True,), "rate limit must be a whole number >= 1"),
        ((5, 0), "rate period must be a number of seconds or a timedelta > 0, not 0"),
        ((5, -1.0), "rate period must be"),
        ((5, float("inf")), "rate period must be"),
        ((5, "1s"), "rate period must be"),
        ((5, 1.0, 0), "rate burst must be a whole number >= 1, not 0"),
    ],
)
def test_a_bad_rate_is_refused(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        Rate(*args)


def test_limits_round_trip_through_json() -> None:
    limits = Limits(
        rate=Rate(50, 1, burst=10),
        concurrency=5,
        types={"email": TypeLimit(rate=Rate(10, 60)), "pdf": TypeLimit(concurrency=2)},
        keys=KeyLimit(concurrency=1, rate=Rate(3)),
    )
    assert Limits.from_json(limits.to_json()) == limits
    assert limits.to_dict() == {
        "rate": {"limit": 50, "period": 1.0, "burst": 10},
        "concurrency": 5,
        "types": {
            "email": {"rate": {"limit": 10, "period": 60.0, "burst": 10}},
            "pdf": {"concurrency": 2},
        },
        "keys": {"rate": {"limit": 3, "period": 1.0, "burst": 3}, "concurrency": 1},
    }


def test_empty_parts_are_left_out() -> None:
    assert Limits().empty
    assert Limits(types={"a": TypeLimit()}, keys=KeyLimit()).empty
    assert Limits.from_dict({}) == Limits()
    assert Limits.from_dict({"rate": {"limit": 2}}).rate == Rate(2, 1.0, 2)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"rate": {"limit": -1}}, "rate limit must be a whole number >= 1, not -1"),
        ({"rate": {"limit": 5, "period": 0}}, "rate period must be .* > 0, not 0"),
        ({"rate": {"period": 1}}, "rate needs a 'limit'"),
        ({"rate": {"limit": 5, "per": 1}}, "rate: unknown field\\(s\\) 'per'"),
        ({"concurency": 5}, "limits: unknown field\\(s\\) 'concurency'"),
        ({"concurrency": 0}, "concurrency must be a whole number >= 1, not 0"),
        ({"types": {"a": {"concurrency": -2}}}, "types\\['a'\\] concurrency must be"),
        ({"types": {"a": {"burst": 2}}}, "types\\['a'\\]: unknown field\\(s\\) 'burst'"),
        ({"types": {"a": {"rate": {"limit": 1, "period": -3}}}}, "types\\['a'\\] rate period"),
        ({"types": []}, "types must be an object"),
        ({"keys": {"max": 1}}, "keys: unknown field\\(s\\) 'max'"),
        ({"keys": {"rate": {"limit": 0}}}, "keys rate limit must be"),
        ([], "limits must be an object"),
    ],
)
def test_bad_limits_are_a_clear_error(doc: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Limits.from_dict(doc)


def test_limits_that_are_not_json_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="limits are not JSON"):
        Limits.from_json("{rate")


def test_parts_given_as_objects_are_checked_too() -> None:
    with pytest.raises(ConfigurationError, match="queue concurrency must be"):
        Limits(concurrency=0)
    with pytest.raises(ConfigurationError, match="type limit concurrency must be"):
        TypeLimit(concurrency=-1)
    with pytest.raises(ConfigurationError, match="must be a TypeLimit"):
        Limits(types={"a": Rate(1)})  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="non-empty string"):
        Limits(types={"": TypeLimit(concurrency=1)})
    with pytest.raises(ConfigurationError, match="key limit rate must be a Rate"):
        KeyLimit(rate=5)  # type: ignore[arg-type]


def test_limit_stats_read_the_state_hash() -> None:
    limits = Limits(rate=Rate(10, 1.0, burst=4), concurrency=3)
    state = {
        "t:q": "7",
        "t:t:email": "2",
        "c:email": "1",
        "c:gone": "0",
        "h:pdf": "11000",
        "h:old": "500",
        "t:h:pdf": "3",
        "t:k:tenant-1": "4",
        "ck:tenant-1": "2",
        "hk:tenant-2": "10500",
        "t:hk:tenant-2": "1",
        "b:q": "1.5:9000",  # 1.5 tokens at 9000 ms; 10 per s: full (4) by 10000 ms
        "junk": "x",
    }
    stats = LimitStats.read(state, limits, pending=100, running=1, now_ms=10_000)
    assert stats.throttled_queue == 7
    assert stats.throttled_by_type == {"email": 2}
    assert stats.throttled == 13
    assert stats.throttled_by_key == {"tenant-1": 4}
    assert stats.running_by_key == {"tenant-1": 2}
    assert (stats.held_keys, stats.holds_by_key) == ({"tenant-2": 0.5}, {"tenant-2": 1})
    assert stats.running_by_type == {"email": 1}
    assert stats.held_types == {"pdf": 1.0}
    assert stats.holds_by_type == {"pdf": 3}
    assert stats.eligible == 2  # concurrency 3 less 1 running (the bucket holds 4)
    drained = LimitStats.read({"b:q": "0.2:10000"}, limits, 100, 0, 10_050)
    assert drained.eligible == 0  # 0.2 + 0.5 tokens
    assert LimitStats.read({}, Limits(), 3, 0, 0).eligible == 3
