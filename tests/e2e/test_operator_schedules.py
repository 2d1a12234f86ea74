"""Schedules on the ActivityQueue end to end: a real kube-apiserver, redis-server and the
operator as a process, no worker at all: the operator fires the schedules itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import pytest

from runnerq import ActivityClient
from runnerq.schedule import Schedule
from runnerq.schedules import ScheduleInfo

from .cluster import ControlPlane
from .operator_harness import (
    OperatorProcess,
    activity_queue,
    condition,
    get,
    reasons,
    replicas,
    stats,
)
from .waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def stored_schedules(redis_url: str, queue: str) -> dict[str, ScheduleInfo]:
    async def run() -> dict[str, ScheduleInfo]:
        async with ActivityClient(redis_url, queue) as client:
            return {info.name: info for info in await client.schedules.list()}

    return asyncio.run(run())


def upsert(redis_url: str, queue: str, schedule: Schedule) -> None:
    async def run() -> None:
        async with ActivityClient(redis_url, queue) as client:
            await client.schedules.upsert(schedule)

    asyncio.run(run())


def every_second(name: str = "tick", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": name,
        "everySeconds": 1,
        "activity": {"type": "noop", "payload": {"from": "the spec"}},
    }
    item.update(extra)
    return {k: v for k, v in item.items() if v is not None}  # None: left out


def test_the_operator_fires_with_no_worker_and_the_backlog_scales_up(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, redis_url: str
) -> None:
    queue = f"{namespace}.ticks"
    control_plane.apply(
        activity_queue(
            "ticks", namespace, redis_url, queue,
            scaling={"minReplicas": 0, "pollIntervalSeconds": 1, "targetPerReplica": 2},
            schedules=[every_second()],
        )
    )  # fmt: skip
    # No worker runs anywhere: every activity in the queue was fired by the operator.
    wait_for(lambda: stats(redis_url, queue).pending >= 3, what="3 ticks fired", timeout=60)
    info = stored_schedules(redis_url, queue)["tick"]
    assert info.schedule is not None and info.schedule.owner == "operator"
    assert info.schedule.payload == {"from": "the spec"}
    wait_for(lambda: (replicas(control_plane, namespace, "ticks") or 0) >= 1, what="scaled up")
    assert "ScaledUp" in reasons(control_plane, namespace, "ticks")

    def reported() -> dict[str, Any] | None:
        status = (get(control_plane, "activityqueue", "ticks", namespace) or {}).get("status", {})
        entries = status.get("schedules") or [{}]
        return status if entries[0].get("lastTick") and entries[0].get("fired", 0) >= 2 else None

    status = wait_for(reported, what="status.schedules with a last tick")
    (entry,) = status["schedules"]
    assert entry["name"] == "tick" and entry["suspended"] is False
    assert entry["nextTick"] > entry["lastTick"]
    assert status["nextTick"] == entry["nextTick"]
    assert len(entry["lastActivityId"]) == 32
    ready = condition(control_plane, namespace, "ticks", "SchedulesReady")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Written")
    wide = control_plane.kubectl("get", "aq", "ticks", "-n", namespace, "-o", "wide").stdout
    header, row = wide.split("\n")[:2]
    assert header.split()[-4:] == ["SCHEDULES", "NEXT", "TICK", "AGE"]
    assert "True" in row.split() and any(w.endswith("Z") for w in row.split())

    # Each tick once: the ticks of the activities are whole, distinct seconds.
    fired = info.state.fired
    later = stored_schedules(redis_url, queue)["tick"].state
    assert later.fired >= fired
    print(f"fired {later.fired}, missed {later.missed}, skipped {later.skipped}")
    # The first firing on this Redis finds its scripts not loaded yet: fired again at once,
    # not logged as a failure (it was, and the tick was late by a poll interval).
    assert "cannot fire the schedules" not in operator.log()

    # Out of the spec: out of Redis (the activities it enqueued stay).
    control_plane.kubectl(
        "patch", "aq", "ticks", "-n", namespace, "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/schedules"}]),
    )  # fmt: skip
    wait_for(lambda: "tick" not in stored_schedules(redis_url, queue), what="removed from Redis")
    wait_for(
        lambda: (
            (c := condition(control_plane, namespace, "ticks", "SchedulesReady"))
            and c["reason"] == "NoSchedules"
        ),
        what="SchedulesReady NoSchedules",
    )
    assert stats(redis_url, queue).pending >= 3
    assert "schedule tick removed (it left spec.schedules)" in operator.log()


@pytest.mark.parametrize(
    ("schedules", "message"),
    [
        ([every_second("a"), every_second("a")], 'duplicate entries for key [name="a"]'),
        ([every_second(cron="* * * * *")], "set exactly one of cron and everySeconds"),
        ([{"name": "x", "activity": {"type": "t"}}], "set exactly one of cron and everySeconds"),
        ([every_second(everySeconds=None, cron="* * *")], "cron takes 5 fields"),
        ([every_second(timeZone="not a zone")], "timeZone is an IANA name"),
        ([every_second(everySeconds=0)], "should be greater than or equal to 1"),
        ([every_second(catchUp="Sometimes")], 'supported values: "Skip", "Latest", "All"'),
        ([every_second(name="bad name")], "name is letters, digits"),
        ([{"name": "x", "everySeconds": 5}], "activity: Required value"),
    ],
)
def test_schedules_the_api_server_can_judge_are_refused(
    control_plane: ControlPlane, crd: str, namespace: str, schedules: Any, message: str
) -> None:
    bad = activity_queue("bad", namespace, "redis://r:6379", "q", schedules=schedules)
    with pytest.raises(subprocess.CalledProcessError) as refused:
        control_plane.apply(bad)
    assert message in refused.value.stderr


def test_schedules_only_the_operator_can_judge_are_a_condition_and_nothing_is_written(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, redis_url: str
) -> None:
    queue = f"{namespace}.badzone"
    control_plane.apply(
        activity_queue(
            "badzone", namespace, redis_url, queue,
            schedules=[
                every_second("fine"),
                every_second("zone", timeZone="Mars/Olympus_Mons"),
                every_second("cron", everySeconds=None, cron="61 * * * *"),
            ],
        )
    )  # fmt: skip
    refused = wait_for(
        lambda: (
            (c := condition(control_plane, namespace, "badzone", "SchedulesReady"))
            and c["reason"] == "InvalidSchedule"
            and c
        ),
        what="SchedulesReady InvalidSchedule",
    )
    assert refused["status"] == "False"
    assert (
        "spec.schedules[1].timeZone: unknown time zone 'Mars/Olympus_Mons'" in (refused["message"])
    )
    assert "spec.schedules[2].cron: invalid cron expression '61 * * * *'" in refused["message"]
    assert "InvalidSchedule" in reasons(control_plane, namespace, "badzone")
    ready = condition(control_plane, namespace, "badzone", "Ready")
    assert ready is not None and ready["status"] == "True"  # the queue itself is served
    assert stored_schedules(redis_url, queue) == {}  # nothing half-written: not even "fine"

    # Fixed: written.
    control_plane.apply(
        activity_queue("badzone", namespace, redis_url, queue, schedules=[every_second("fine")])
    )
    wait_for(lambda: "fine" in stored_schedules(redis_url, queue), what="the fixed spec written")


def test_a_name_clash_with_a_code_schedule_is_a_condition_and_an_event_not_an_overwrite(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, redis_url: str
) -> None:
    queue = f"{namespace}.clash"
    code = Schedule("report", "reports.daily", cron="0 3 * * *", owner="code")
    upsert(redis_url, queue, code)
    before = stored_schedules(redis_url, queue)["report"]
    control_plane.apply(
        activity_queue(
            "clash", namespace, redis_url, queue,
            schedules=[every_second("report"), every_second("other")],
        )
    )  # fmt: skip
    clash = wait_for(
        lambda: (
            (c := condition(control_plane, namespace, "clash", "SchedulesReady"))
            and c["reason"] == "NameClash"
            and c
        ),
        what="SchedulesReady NameClash",
    )
    assert clash["status"] == "False"
    assert (
        "schedule report is declared by code (engine.schedule), not written" in (clash["message"])
    )
    assert "NameClash" in reasons(control_plane, namespace, "clash")
    wait_for(lambda: "other" in stored_schedules(redis_url, queue), what="the other written")
    time.sleep(1.5)  # a few firing rounds and a sync: the code one stays as it was
    after = stored_schedules(redis_url, queue)["report"]
    assert after.schedule == code and after.schedule is not None
    assert after.schedule.owner == "code"
    assert after.state.version == before.state.version
    status = (get(control_plane, "activityqueue", "clash", namespace) or {})["status"]
    entries = {e["name"]: e for e in status["schedules"]}
    assert "declared by code" in entries["report"]["error"]
    assert "lastTick" not in entries["report"]
