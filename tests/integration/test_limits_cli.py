"""``runnerq limits ...`` and the limits in ``runnerq stats``, run as real processes against
the test Redis."""

from __future__ import annotations

import json

import pytest

from runnerq import ActivityClient, ActivityOption, KeyLimit, Limits, Rate, TypeLimit
from runnerq.keys import QueueKeys
from runnerq.worker import new_worker_id
from tests.integration.test_cli import runnerq


def _env(redis_url: str, queue_name: str) -> dict[str, str]:
    return {"RUNNERQ_REDIS_URL": redis_url, "RUNNERQ_QUEUE": queue_name}


async def test_set_show_clear_with_json_and_flags(
    redis_url: str, queue_name: str, client: ActivityClient
) -> None:
    env = _env(redis_url, queue_name)
    none = runnerq("limits", "show", env=env)
    assert none.returncode == 0, none.stderr
    assert f"queue {queue_name}: no limits" in none.stdout
    assert json.loads(runnerq("limits", "show", "--json", env=env).stdout) == {}

    doc = {
        "rate": {"limit": 50, "period": 1, "burst": 10},
        "concurrency": 5,
        "types": {"pdf": {"concurrency": 2}},
        "keys": {"rate": {"limit": 3, "period": 60}},
    }
    put = runnerq("limits", "set", "--json", json.dumps(doc), env=env)
    assert put.returncode == 0, put.stderr
    expected = Limits(
        rate=Rate(50, 1, burst=10),
        concurrency=5,
        types={"pdf": TypeLimit(concurrency=2)},
        keys=KeyLimit(rate=Rate(3, 60)),
    )
    assert await client.get_limits() == expected
    shown = runnerq("limits", "show", env=env).stdout
    assert "rate 50/1s burst 10, concurrency 5" in shown
    assert "type pdf: concurrency 2" in shown and "each key: rate 3/60s burst 3" in shown
    # show --json gives back what set --json takes.
    printed = runnerq("limits", "show", "--json", env=env).stdout
    assert Limits.from_json(printed) == expected

    flags = runnerq(
        "limits", "set", "--rate", "600/1m", "--burst", "20", "--concurrency", "8",
        "--type-rate", "email=10/60s", "--type-concurrency", "email=1",
        "--type-concurrency", "pdf=3", "--key-concurrency", "1", "--key-rate", "2",
        env=env,
    )  # fmt: skip
    assert flags.returncode == 0, flags.stderr
    assert await client.get_limits() == Limits(
        rate=Rate(600, 60, burst=20),
        concurrency=8,
        types={
            "email": TypeLimit(rate=Rate(10, 60), concurrency=1),
            "pdf": TypeLimit(concurrency=3),
        },
        keys=KeyLimit(rate=Rate(2, 1), concurrency=1),
    )

    cleared = runnerq("limits", "clear", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert "limits cleared" in cleared.stdout
    assert await client.get_limits() == Limits()
    assert "limits" not in await client.get_queue_config()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json", '{"rate": {"limit": -1}}'], "rate limit must be a whole number >= 1"),
        (["--json", '{"rate": {"limit": 5, "period": 0}}'], "rate period must be"),
        (["--json", '{"keys": {"tenant": 1}}'], "unknown field(s) 'tenant'"),
        (["--json", '{"rate": '], "limits are not JSON"),
        (["--rate=-5/1s"], "rate limit must be a whole number >= 1"),
        (["--rate", "5/0s"], "rate period must be"),
        (["--rate", "5/soon"], "--rate: 'soon' is not a period"),
        (["--concurrency", "zero"], "--concurrency: 'zero' is not a whole number"),
        (["--burst", "3"], "--burst goes with --rate"),
        (["--type-concurrency", "pdf"], "--type-concurrency takes TYPE=VALUE"),
        (["--concurrency", "2", "--json", "{}"], "as --json or as flags, not both"),
        ([], "give the limits as --json or flags"),
    ],
)
async def test_bad_input_is_one_line_exit_2_and_nothing_written(
    redis_url: str, queue_name: str, client: ActivityClient, args: list[str], message: str
) -> None:
    await client.set_limits(Limits(concurrency=7))
    before = await client.get_queue_config()
    result = runnerq("limits", "set", *args, env=_env(redis_url, queue_name))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("runnerq: ")
    assert message in result.stderr, result.stderr
    assert await client.get_queue_config() == before


async def test_stats_show_throttled_counts_by_type_and_key_and_eligible(
    redis_url: str, queue_name: str, client: ActivityClient
) -> None:
    env = _env(redis_url, queue_name)
    plain = runnerq("stats", env=env).stdout
    assert "limits:" not in plain  # nothing limited: no section

    await client.set_limits(
        Limits(
            concurrency=4,
            types={"pdf": TypeLimit(concurrency=1)},
            keys=KeyLimit(concurrency=1),
        )
    )
    await client.enqueue_many([("pdf", i) for i in range(3)])
    for i in range(3):
        await client.execute_activity("mail", i, ActivityOption(limit_key="tenant-a"))
    worker = new_worker_id()
    for _ in range(3):  # one pdf and one of tenant-a start; the rest are held back
        await client.store.claim(10, 60.0, worker)
    stats = await client.get_limit_stats()
    assert stats.throttled_by_type.get("pdf", 0) >= 1
    assert stats.throttled_by_key.get("tenant-a", 0) >= 1

    text = runnerq("stats", env=env)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "limits: concurrency 4; type pdf: concurrency 1; each key: concurrency 1" in out
    assert "eligible now  2" in out  # 4 pending, 2 running, concurrency 4
    assert "throttled by type: pdf " in out
    assert "throttled by key: tenant-a " in out
    assert "running by type: " in out

    doc = json.loads(runnerq("stats", "--json", env=env).stdout)
    assert doc["limits"]["concurrency"] == 4
    assert doc["limit_stats"]["eligible"] == 2
    assert doc["limit_stats"]["throttled_by_type"]["pdf"] >= 1
    assert doc["limit_stats"]["throttled_by_key"]["tenant-a"] >= 1


def test_limits_that_cannot_be_read_are_an_error_in_show_and_a_line_in_stats(
    redis_url: str, queue_name: str
) -> None:
    import redis

    with redis.Redis.from_url(redis_url) as raw:
        raw.hset(QueueKeys(queue_name).config, "limits", "{broken")
    result = runnerq("limits", "show", env=_env(redis_url, queue_name))
    assert result.returncode == 2
    assert "limits are not JSON" in result.stderr
    # runnerq stats still shows the rest, and says so.
    stats = runnerq("stats", env=_env(redis_url, queue_name))
    assert stats.returncode == 0, stats.stderr
    assert "limits: unreadable (limits are not JSON" in stats.stdout
    assert "pending" in stats.stdout
