"""Schedules without I/O: triggers (cron in time zones, DST, intervals), the firing plan
(catch-up, starting deadline) and the checked model."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runnerq.errors import ConfigurationError
from runnerq.schedule import MAX_TICKS_SCANNED, ON_TIME, Schedule, plan
from runnerq.triggers import CronTrigger, IntervalTrigger, make_trigger


def _ticks(trigger: CronTrigger, start: datetime, n: int) -> list[datetime]:
    out, t = [], start.timestamp()
    for _ in range(n):
        t = trigger.next_after(t)
        out.append(datetime.fromtimestamp(t, trigger.tz))
    return out


def _local(ticks: list[datetime]) -> list[str]:
    return [t.strftime("%m-%d %H:%M:%S%z") for t in ticks]


# -- daylight-saving time -----------------------------------------------------------------
# Berlin: 2026-03-29 02:00 -> 03:00 (02:xx skipped); 2026-10-25 03:00 -> 02:00 (02:xx twice).
# New York: 2026-03-08 02:00 -> 03:00; 2026-11-01 02:00 -> 01:00 (01:xx twice).


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *"])
def test_a_tick_in_the_skipped_hour_fires_once_at_the_transition_berlin(expr: str) -> None:
    trigger = CronTrigger(expr, "Europe/Berlin")
    ticks = _ticks(trigger, datetime(2026, 3, 28, 12, tzinfo=trigger.tz), 3)
    assert _local(ticks) == ["03-29 03:00:00+0200", "03-30 02:30:00+0200", "03-31 02:30:00+0200"]


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *"])
def test_a_tick_in_the_repeated_hour_fires_once_berlin(expr: str) -> None:
    trigger = CronTrigger(expr, "Europe/Berlin")
    ticks = _ticks(trigger, datetime(2026, 10, 24, 12, tzinfo=trigger.tz), 3)
    assert _local(ticks) == ["10-25 02:30:00+0200", "10-26 02:30:00+0100", "10-27 02:30:00+0100"]


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *"])
def test_a_tick_in_the_skipped_hour_fires_once_at_the_transition_new_york(expr: str) -> None:
    trigger = CronTrigger(expr, "America/New_York")
    ticks = _ticks(trigger, datetime(2026, 3, 7, 12, tzinfo=trigger.tz), 2)
    assert _local(ticks) == ["03-08 03:00:00-0400", "03-09 02:30:00-0400"]


@pytest.mark.parametrize("expr", ["30 1 * * *", "0 30 1 * * *"])
def test_a_tick_in_the_repeated_hour_fires_once_new_york(expr: str) -> None:
    trigger = CronTrigger(expr, "America/New_York")
    ticks = _ticks(trigger, datetime(2026, 10, 31, 12, tzinfo=trigger.tz), 2)
    assert _local(ticks) == ["11-01 01:30:00-0400", "11-02 01:30:00-0500"]


def test_wildcard_hours_follow_the_real_hours() -> None:
    trigger = CronTrigger("*/30 * * * *", "Europe/Berlin")
    ticks = _ticks(trigger, datetime(2026, 10, 25, 1, 45, tzinfo=trigger.tz), 5)
    assert _local(ticks) == [
        "10-25 02:00:00+0200",
        "10-25 02:30:00+0200",
        "10-25 02:00:00+0100",
        "10-25 02:30:00+0100",
        "10-25 03:00:00+0100",
    ]


def test_six_fields_put_the_seconds_first() -> None:
    trigger = CronTrigger("*/20 * * * * *", "UTC")
    ticks = _ticks(trigger, datetime(2026, 1, 1, 0, 0, 5, tzinfo=trigger.tz), 4)
    assert [t.strftime("%M:%S") for t in ticks] == ["00:20", "00:40", "01:00", "01:20"]


def test_next_after_is_strictly_after() -> None:
    trigger = CronTrigger("* * * * * *", "UTC")
    assert trigger.next_after(100.0) == 101.0
    assert trigger.next_after(100.5) == 101.0
    interval = IntervalTrigger(60)
    assert interval.next_after(120.0) == 180.0
    assert interval.next_after(119.9) == 120.0


def test_schedules_sharing_an_expression_share_its_trigger() -> None:
    a = Schedule("a", "t", cron="0 3 * * *", timezone="Europe/Berlin")
    b = Schedule("b", "t", cron=" 0  3 * * * ", timezone="Europe/Berlin")
    c = Schedule("c", "t", cron="0 3 * * *", timezone="America/New_York")
    assert a.trigger is b.trigger
    assert a.trigger is not c.trigger
    assert make_trigger("0 3 * * *", None, "Europe/Berlin") is a.trigger


@pytest.mark.parametrize("expr", ["61 * * * *", "0 0 30 2 *"])
def test_a_bad_expression_is_refused_every_time(expr: str) -> None:
    for _ in range(2):  # (not remembered as if it were good)
        with pytest.raises(ConfigurationError):
            make_trigger(expr, None)


@given(
    st.sampled_from(["*/7 * * * * *", "30 2 * * *", "0 30 1 * * 0", "*/5 1-3 * * *"]),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    st.lists(st.integers(min_value=1_770_000_000, max_value=1_800_000_000), max_size=8),
)
def test_the_remembered_answer_is_the_answer(expr: str, tz: str, times: list[int]) -> None:
    """A shared trigger remembers its last answer: asked again, in any order, every answer
    is what a trigger of its own computes."""
    shared = make_trigger(expr, None, tz)
    for t in times + times[::-1] + times:
        assert shared.next_after(t) == CronTrigger(expr, tz).next_after(t)


@given(st.floats(min_value=0, max_value=4e9), st.sampled_from([1, 7, 60, 3600.5]))
def test_interval_ticks_are_the_same_for_every_firer(t: float, every: float) -> None:
    trigger = IntervalTrigger(every)
    tick = trigger.next_after(t)
    assert t < tick <= t + every
    assert (tick / every) == pytest.approx(round(tick / every))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "* * *"}, "has 3 fields"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 10, "timezone": "Nowhere"}, "unknown time zone"),
        ({"cron": "* * * * *", "every": 5}, "exactly one trigger"),
        ({}, "exactly one trigger"),
        ({"every": 0.5}, "at least 1 second"),
        ({"every": "10"}, "every must be"),
        ({"cron": "0 0 30 2 *"}, "invalid cron expression"),
        ({"every": 5, "payload": float("nan")}, "not JSON"),
        ({"every": 5, "payload": {"x": object()}}, "not JSON"),
        ({"every": 5, "catch_up": "some"}, "catch_up must be"),
        ({"every": 5, "catch_up_limit": 0}, "catch_up_limit"),
        ({"every": 5, "starting_deadline": -1}, "starting_deadline"),
        ({"every": 5, "concurrency": "sometimes"}, "concurrency must be"),
        ({"every": 5, "priority": "urgent"}, "priority"),
        ({"every": 5, "max_retries": -1}, "max_retries"),
    ],
)
def test_bad_schedules_are_refused_clearly(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ConfigurationError, ValueError), match=message):
        Schedule("s", "t", **kwargs)


@pytest.mark.parametrize("name", ["", "has space", "x" * 101, "-lead", "a/b", "{tag}"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid schedule name"):
        Schedule(name, "t", every=5)


def test_the_stored_form_round_trips_and_refuses_unknown_fields() -> None:
    s = Schedule(
        "nightly",
        "report",
        cron="0 3 * * *",
        timezone="Europe/Berlin",
        payload={"kind": "daily"},
        priority="high",
        max_retries=2,
        timeout=60,
        metadata={"team": "x"},
        catch_up="all",
        catch_up_limit=3,
        starting_deadline=600,
        concurrency="forbid",
        owner="code",
    )
    assert Schedule.from_json(s.to_json()) == s
    doc = json.loads(s.to_json())
    doc["surprise"] = 1
    with pytest.raises(ConfigurationError, match="unknown schedule field"):
        Schedule.from_dict(doc)
    with pytest.raises(ConfigurationError, match="not JSON"):
        Schedule.from_json("{")


# -- the firing plan ------------------------------------------------------------------------

HOUR = 3600.0
T0 = 1_800_000_000.0  # a multiple of 60: on the minute


def _every_minute(**kwargs: Any) -> Schedule:
    return Schedule("s", "t", every=60, **kwargs)


def test_nothing_due_fires_nothing() -> None:
    assert plan(_every_minute(), T0 + 60, T0).ticks == ()


def test_the_tick_that_just_came_fires() -> None:
    p = plan(_every_minute(), T0, T0 + 0.01)
    assert (p.ticks, p.missed, p.next_tick) == ((T0,), 0, T0 + 60)


def test_a_tick_reached_late_but_on_time_still_fires() -> None:
    assert plan(_every_minute(), T0, T0 + ON_TIME).ticks == (T0,)


@pytest.mark.parametrize(
    ("catch_up", "limit", "expected"),
    [
        ("skip", 10, ()),
        ("latest", 10, (T0 + HOUR - 60,)),
        ("all", 5, tuple(T0 + HOUR - 60 * i for i in range(5, 0, -1))),
    ],
)
def test_an_hour_missed(catch_up: Any, limit: int, expected: tuple[float, ...]) -> None:
    """The stored next tick is an hour old and the firer comes 30 s after a tick: 60 ticks
    were missed, none is on time."""
    now = T0 + HOUR - 30
    p = plan(_every_minute(catch_up=catch_up, catch_up_limit=limit), T0, now)
    assert p.ticks == expected
    assert p.missed == 60 - len(expected)
    assert p.next_tick == T0 + HOUR


def test_an_on_time_tick_stands_for_the_missed_ones_with_latest() -> None:
    now = T0 + HOUR + 0.5
    p = plan(_every_minute(catch_up="latest"), T0, now)
    assert (p.ticks, p.missed) == ((T0 + HOUR,), 60)
    p = plan(_every_minute(catch_up="all", catch_up_limit=2), T0, now)
    assert p.ticks == (T0 + HOUR - 120, T0 + HOUR - 60, T0 + HOUR)


def test_never_beyond_the_starting_deadline() -> None:
    now = T0 + HOUR - 30
    p = plan(_every_minute(catch_up="all", catch_up_limit=100, starting_deadline=300), T0, now)
    assert p.ticks and min(p.ticks) >= now - 300
    assert p.ticks == tuple(T0 + HOUR - 60 * i for i in range(5, 0, -1))
    assert p.missed == 55
    late = plan(_every_minute(starting_deadline=1), T0, T0 + 1.5)
    assert (late.ticks, late.missed) == ((), 1)


def test_a_month_of_missed_seconds_is_not_walked_tick_by_tick() -> None:
    s = Schedule("s", "t", every=1, catch_up="all")
    p = plan(s, T0, T0 + 30 * 24 * HOUR)
    assert p.ticks == ()
    assert p.missed == MAX_TICKS_SCANNED
    assert p.next_tick == T0 + 30 * 24 * HOUR + 1


@given(
    stored=st.integers(0, 500),
    late=st.floats(min_value=0, max_value=5000),
    catch_up=st.sampled_from(["skip", "latest", "all"]),
    limit=st.integers(1, 20),
    deadline=st.none() | st.floats(min_value=1, max_value=2000),
)
def test_plan_invariants(
    stored: int, late: float, catch_up: Any, limit: int, deadline: float | None
) -> None:
    s = _every_minute(catch_up=catch_up, catch_up_limit=limit, starting_deadline=deadline)
    stored_next = T0 + 60 * stored
    now = stored_next + late
    p = plan(s, stored_next, now)
    due = [stored_next + 60 * i for i in range(int(late // 60) + 1)]
    assert list(p.ticks) == sorted(set(p.ticks))  # oldest first, each once
    assert set(p.ticks) <= set(due)  # only due ticks, never early
    assert p.next_tick == due[-1] + 60 and p.next_tick > now
    assert len(p.ticks) + p.missed == len(due)  # every due tick is run or counted
    if deadline is not None:
        assert all(now - t <= deadline for t in p.ticks)
    if catch_up != "all":
        assert len(p.ticks) <= 1
    else:
        assert len(p.ticks) <= limit + 1
