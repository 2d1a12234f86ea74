"""spec.schedules: parsed into runnerq Schedules owned by the operator, or every problem with
its field path (kept beside the spec: a bad schedule refuses the schedules, not the queue)."""

from __future__ import annotations

from typing import Any

import pytest
from runnerq_operator.spec import SpecError, parse_schedules, parse_spec

from runnerq import ActivityPriority

from .test_spec import minimal


def every(name: str = "tick", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": name, "everySeconds": 1, "activity": {"type": "noop"}}
    item.update(extra)
    return item


def test_no_schedules() -> None:
    spec = parse_spec(minimal(), "q")
    assert spec.schedules == ()
    assert spec.schedule_problems == ()


def test_an_interval_schedule_with_the_defaults() -> None:
    (schedule,) = parse_schedules([every()])
    assert schedule.name == "tick"
    assert schedule.every == 1.0 and schedule.cron is None
    assert schedule.timezone == "UTC"
    assert schedule.activity_type == "noop"
    assert schedule.payload is None
    assert schedule.priority is ActivityPriority.NORMAL
    assert (schedule.max_retries, schedule.timeout, schedule.metadata) == (None, None, {})
    assert (schedule.catch_up, schedule.catch_up_limit) == ("skip", 10)
    assert schedule.starting_deadline is None
    assert schedule.concurrency == "allow"
    assert schedule.suspended is False
    assert schedule.owner == "operator"


def test_a_cron_schedule_with_every_field() -> None:
    item = {
        "name": "nightly-report",
        "cron": "30 2 * * *",
        "timeZone": "Europe/Berlin",
        "activity": {
            "type": "reports.nightly",
            "payload": {"format": "pdf", "pages": [1, 2]},
            "priority": "High",
            "maxRetries": 3,
            "timeoutSeconds": 600,
            "metadata": {"team": "billing"},
        },
        "catchUp": "All",
        "catchUpLimit": 5,
        "startingDeadlineSeconds": 3600,
        "concurrencyPolicy": "Forbid",
        "suspend": True,
    }
    spec = parse_spec(minimal(schedules=[item]), "q")
    (schedule,) = spec.schedules
    assert schedule.cron == "30 2 * * *" and schedule.every is None
    assert schedule.timezone == "Europe/Berlin"
    assert schedule.payload == {"format": "pdf", "pages": [1, 2]}
    assert schedule.priority is ActivityPriority.HIGH
    assert (schedule.max_retries, schedule.timeout) == (3, 600.0)
    assert schedule.metadata == {"team": "billing"}
    assert (schedule.catch_up, schedule.catch_up_limit) == ("all", 5)
    assert schedule.starting_deadline == 3600.0
    assert schedule.concurrency == "forbid"
    assert schedule.suspended is True
    assert schedule.owner == "operator"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            [every("a"), every("b"), every("a")],
            "spec.schedules[2].name: 'a' is also the name of spec.schedules[0]",
        ),
        (
            [every(cron="* * * * *")],
            "set exactly one of spec.schedules[0].cron and spec.schedules[0].everySeconds",
        ),
        (
            [{"name": "x", "activity": {"type": "t"}}],
            "set exactly one of spec.schedules[0].cron and spec.schedules[0].everySeconds",
        ),
        ([every(timeZone="Mars/Olympus_Mons")], "spec.schedules[0].timeZone: unknown time zone"),
        (
            [every("c", everySeconds=None, cron="61 * * * *")],
            "spec.schedules[0].cron: invalid cron expression '61 * * * *'",
        ),
        (
            [every("c", everySeconds=None, cron="* * *")],
            "spec.schedules[0].cron: cron expression '* * *' has 3 fields",
        ),
        (
            [every(activity={"type": "t", "payload": {"x": float("nan")}})],
            "spec.schedules[0].activity.payload is not JSON-serializable",
        ),
        ([every(activity={"type": "t", "payload": {1, 2}})], "activity.payload is not JSON"),
        ([every(everySeconds=0)], "spec.schedules[0].everySeconds must be >= 1"),
        ([every(name="bad name")], "spec.schedules[0].name: invalid schedule name"),
        ([every(activity={})], "spec.schedules[0].activity.type is required"),
        ([every(activity={"type": "t", "priority": "Urgent"})], "priority must be one of"),
        ([every(catchUp="Some")], "spec.schedules[0].catchUp must be one of Skip, Latest, All"),
        ([every(concurrencyPolicy="Never")], "concurrencyPolicy must be one of Allow, Forbid"),
        ([every(catchUpLimit=0)], "spec.schedules[0].catchUpLimit must be >= 1"),
        ([every(startingDeadlineSeconds=0)], "startingDeadlineSeconds must be >= 1"),
        ([every(suspend="no")], "spec.schedules[0].suspend must be true or false"),
        ({"name": "x"}, "spec.schedules must be a list of objects"),
        (["x"], "spec.schedules must be a list of objects"),
    ],
)
def test_bad_schedules_say_what_is_wrong(items: Any, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_schedules(items)
    assert message in str(caught.value)


def test_a_bad_schedule_refuses_the_schedules_not_the_queue() -> None:
    """Nothing half-written: one bad schedule and none of them is taken; the rest of the spec
    (Deployment, scaling) stands, and the problems are kept for the SchedulesReady condition."""
    spec = parse_spec(minimal(schedules=[every("good"), every("bad", timeZone="Nowhere")]), "q")
    assert spec.schedules == ()
    assert len(spec.schedule_problems) == 1
    assert spec.schedule_problems[0].startswith("spec.schedules[1].timeZone: unknown time zone")
    assert spec.worker.app == "myapp.tasks:engine"


def test_every_schedule_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        parse_schedules([every("a", timeZone="Nowhere"), every("a", everySeconds=0)])
    assert len(caught.value.problems) == 3, caught.value.problems
