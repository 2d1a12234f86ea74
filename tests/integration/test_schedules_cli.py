"""``runnerq schedules ...`` and the schedules in ``runnerq stats``, run as real processes
against the test Redis."""

from __future__ import annotations

import json

from runnerq import ActivityClient, Schedule
from runnerq.record import ActivityRecord
from tests.integration.test_cli import runnerq


def _env(redis_url: str, queue_name: str) -> dict[str, str]:
    return {"RUNNERQ_REDIS_URL": redis_url, "RUNNERQ_QUEUE": queue_name}


async def test_add_list_trigger_suspend_resume_delete(
    redis_url: str, queue_name: str, client: ActivityClient
) -> None:
    env = _env(redis_url, queue_name)
    empty = runnerq("schedules", "list", env=env)
    assert empty.returncode == 0, empty.stderr
    assert "no schedules" in empty.stdout
    assert json.loads(runnerq("schedules", "list", "--json", env=env).stdout) == []

    added = runnerq(
        "schedules",
        "add",
        "nightly-report",
        "--cron",
        "30 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--type",
        "report",
        "--payload",
        '{"kind": "daily"}',
        "--priority",
        "high",
        "--concurrency",
        "forbid",
        "--catch-up",
        "latest",
        "--starting-deadline",
        "1h",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert "added schedule nightly-report" in added.stdout
    stored = await client.schedules.get("nightly-report")
    assert stored is not None and stored.schedule is not None
    assert stored.schedule.owner == "api"
    assert stored.schedule.payload == {"kind": "daily"}
    assert stored.schedule.starting_deadline == 3600.0
    assert stored.state.next_tick is not None

    again = runnerq(
        "schedules", "add", "nightly-report", "--cron", "30 2 * * *", "--timezone",
        "Europe/Berlin", "--type", "report", "--payload", '{"kind": "daily"}', "--priority",
        "high", "--concurrency", "forbid", "--catch-up", "latest", "--starting-deadline", "1h",
        env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout

    listing = json.loads(runnerq("schedules", "list", "--json", env=env).stdout)
    assert [s["name"] for s in listing] == ["nightly-report"]
    one = listing[0]
    assert one["schedule"]["cron"] == "30 2 * * *"
    assert one["schedule"]["timezone"] == "Europe/Berlin"
    assert one["next_tick"] == stored.state.next_tick
    assert (one["fired"], one["skipped"], one["missed"], one["suspended"]) == (0, 0, 0, False)
    human = runnerq("schedules", "list", env=env).stdout
    assert "nightly-report" in human
    assert "cron '30 2 * * *' (Europe/Berlin)" in human

    fired = runnerq("schedules", "trigger", "nightly-report", env=env)
    assert fired.returncode == 0, fired.stderr
    activity_id = fired.stdout.strip()
    raw = await client.store.redis.hget(client.store.keys.jobs, activity_id)
    assert raw is not None
    record = ActivityRecord.decode(raw)
    assert record.activity_type == "report"
    assert record.metadata["runnerq_schedule"] == "nightly-report"

    assert runnerq("schedules", "suspend", "nightly-report", env=env).returncode == 0
    suspended = json.loads(runnerq("schedules", "list", "--json", env=env).stdout)[0]
    assert suspended["suspended"] is True
    assert suspended["next_tick"] is None
    assert "suspended" in runnerq("schedules", "list", env=env).stdout
    assert runnerq("schedules", "resume", "nightly-report", env=env).returncode == 0
    resumed = await client.schedules.get("nightly-report")
    assert resumed is not None and not resumed.suspended and resumed.state.next_tick is not None

    deleted = runnerq("schedules", "delete", "nightly-report", env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert await client.schedules.get("nightly-report") is None
    for command in ("delete", "trigger", "suspend", "resume"):
        missing = runnerq("schedules", command, "nightly-report", env=env)
        assert missing.returncode == 1, command
        assert f"no schedule 'nightly-report' on queue '{queue_name}'" in missing.stderr


async def test_bad_input_is_one_line_exit_2_and_nothing_written(
    redis_url: str, queue_name: str, client: ActivityClient
) -> None:
    env = _env(redis_url, queue_name)
    base = ("schedules", "add", "s1", "--type", "t")
    cases = {
        "invalid cron expression": ("--cron", "61 * * * *"),
        "has 3 fields": ("--cron", "* * *"),
        "unknown time zone 'Mars/Olympus'": ("--cron", "* * * * *", "--timezone", "Mars/Olympus"),
        "--payload is not JSON": ("--every", "10s", "--payload", "{nope"),
        "--metadata is not JSON": ("--every", "10s", "--metadata", "[1,"),
        "interval must be at least 1 second": ("--every", "500ms"),
        "invalid schedule name": ("--every", "10"),  # the name below
    }
    for message, flags in cases.items():
        args = [*base, *flags]
        if message.startswith("invalid schedule name"):
            args[2] = "-bad name"
        out = runnerq(*args, env=env)
        assert out.returncode == 2, (message, out.stderr)
        assert message in out.stderr, (message, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith("runnerq: "), out.stderr
    neither = runnerq(*base, env=env)
    assert neither.returncode == 2
    assert "--cron" in neither.stderr and "--every" in neither.stderr
    assert await client.schedules.list() == []
    assert (await client.get_stats()).enqueued == 0


async def test_operator_owned_schedules_are_refused_without_force(
    redis_url: str, queue_name: str, client: ActivityClient
) -> None:
    env = _env(redis_url, queue_name)
    await client.schedules.upsert(Schedule("sync", "sync", every=60, owner="operator"))
    for command in ("delete", "suspend"):
        out = runnerq("schedules", command, "sync", env=env)
        assert out.returncode == 2, out.stderr
        assert "owned by the ActivityQueue's spec" in out.stderr
        assert "--force" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    info = await client.schedules.get("sync")
    assert info is not None and not info.suspended

    # The API cannot take the name over from the CLI either.
    clash = runnerq("schedules", "add", "sync", "--every", "5", "--type", "x", env=env)
    assert clash.returncode == 2
    assert "belongs to 'operator'" in clash.stderr
    info = await client.schedules.get("sync")
    assert info is not None and info.schedule is not None and info.schedule.every == 60

    assert runnerq("schedules", "suspend", "sync", "--force", env=env).returncode == 0
    info = await client.schedules.get("sync")
    assert info is not None and info.suspended
    forced = runnerq("schedules", "delete", "sync", "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert "spec.schedules" in forced.stdout  # it says the operator will write it back
    assert await client.schedules.get("sync") is None


async def test_stats_shows_each_schedule(
    redis_url: str, queue_name: str, client: ActivityClient
) -> None:
    env = _env(redis_url, queue_name)
    before = json.loads(runnerq("stats", "--json", env=env).stdout)
    assert before["schedules"] == []
    await client.schedules.upsert(Schedule("hourly", "h", cron="0 * * * *"))
    await client.schedules.upsert(Schedule("often", "o", every=30, owner="code"))
    await client.schedules.trigger("often")
    stats = json.loads(runnerq("stats", "--json", env=env).stdout)
    # the queue's own keys are there as before
    assert stats["pending"] == 1 and stats["pending_count"] == 1
    by_name = {s["name"]: s for s in stats["schedules"]}
    assert list(by_name) == ["hourly", "often"]
    often = by_name["often"]
    assert often["fired"] == 1 and often["skipped"] == 0 and often["missed"] == 0
    assert often["last_tick"] is not None and often["next_tick"] is not None
    assert often["trigger"] == "every 30s"
    assert by_name["hourly"]["last_tick"] is None
    human = runnerq("stats", env=env).stdout
    assert "schedules" in human
    line = next(line for line in human.splitlines() if "often" in line)
    assert "fired 1" in line and "skipped 0" in line and "missed 0" in line
