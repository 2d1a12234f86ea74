"""Durations as Runner-Q takes them: seconds or a ``timedelta`` wherever a time is given, kept
as seconds; a heartbeat left out follows the lease."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import pytest

from runnerq import (
    ActivityClient,
    ActivityOption,
    ActivityPriority,
    BackoffPolicy,
    ConfigurationError,
    QueueSettings,
    RedisConfig,
    WorkerEngine,
    WorkerSettings,
)
from runnerq.cli import _duration, _parser
from runnerq.durations import seconds

BAD = [-1, -0.5, dt.timedelta(seconds=-1), math.nan, math.inf, -math.inf, True, "5", None]


def test_seconds_keeps_numbers_and_converts_timedeltas() -> None:
    assert seconds(5) == 5 and type(seconds(5)) is int  # an int stays an int (records keep 5)
    assert seconds(2.5) == 2.5
    assert seconds(dt.timedelta(minutes=1, milliseconds=500)) == 60.5
    assert seconds(10**30) == 10**30  # a huge int is finite (no float overflow)
    for bad in (True, False, "1", math.nan, math.inf, -math.inf, None, [1]):
        assert seconds(bad) is None


def test_activity_option_takes_timedeltas_and_keeps_seconds() -> None:
    options = ActivityOption(delay=dt.timedelta(minutes=2), timeout=dt.timedelta(seconds=1.5))
    assert (options.delay, options.timeout) == (120.0, 1.5)
    assert ActivityOption(delay=dt.timedelta(0)).delay == 0.0
    assert (ActivityOption(delay=3, timeout=7).delay, ActivityOption(timeout=7).timeout) == (3, 7)
    assert ActivityOption(timeout=dt.timedelta(seconds=4)) == ActivityOption(timeout=4.0)
    assert dataclasses.replace(options, delay=1).delay == 1
    assert (
        dataclasses.replace(options, priority=ActivityPriority.HIGH).timeout == 1.5
    )  # others kept
    assert ActivityOption().metadata == {}


@pytest.mark.parametrize("bad", BAD[:-1])
def test_activity_option_refuses_bad_durations(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"delay must be a number of seconds or a time"):
        ActivityOption(delay=bad)
    with pytest.raises(ConfigurationError, match=r"timeout must be a number of seconds or a time"):
        ActivityOption(timeout=bad)
    with pytest.raises(ConfigurationError, match="timeout"):
        ActivityOption(timeout=dt.timedelta(0))


async def test_activity_builder_takes_timedeltas() -> None:
    async with ActivityClient("redis://127.0.0.1:1", "q") as client:  # opens nothing
        options = (
            client.activity("t")
            .delay(dt.timedelta(seconds=30))
            .timeout(dt.timedelta(minutes=5))
            .options()
        )
        assert (options.delay, options.timeout) == (30.0, 300.0)
        with pytest.raises(ConfigurationError, match="timeout"):
            await client.set_queue_config(timeout=dt.timedelta(seconds=-5))


def test_settings_take_timedeltas() -> None:
    second = dt.timedelta(seconds=1)
    worker = WorkerSettings(
        schedule_poll_interval=2 * second,
        lease_duration=dt.timedelta(minutes=1),
        heartbeat_interval=15 * second,
        shutdown_grace=dt.timedelta(0),
        default_timeout=dt.timedelta(hours=1),
        loop_stall_limit=90 * second,
    )
    assert (
        worker.schedule_poll_interval,
        worker.lease_duration,
        worker.heartbeat_interval,
        worker.shutdown_grace,
        worker.default_timeout,
        worker.loop_stall_limit,
    ) == (2.0, 60.0, 15.0, 0.0, 3600.0, 90.0)
    redis = RedisConfig(
        conn_timeout=5 * second, idle_timeout=dt.timedelta(minutes=10), socket_timeout=second
    )
    assert (redis.conn_timeout, redis.idle_timeout, redis.socket_timeout) == (5.0, 600.0, 1.0)
    assert RedisConfig(max_lifetime=None).max_lifetime is None
    queue = QueueSettings(result_ttl=dt.timedelta(days=2), idempotency_ttl=dt.timedelta(hours=1))
    assert (queue.result_ttl, queue.idempotency_ttl) == (172800.0, 3600.0)
    backoff = BackoffPolicy(base=dt.timedelta(milliseconds=500), cap=dt.timedelta(minutes=1))
    assert (backoff.base, backoff.cap, backoff.factor, backoff.jitter) == (0.5, 60.0, 2.0, 0.5)


@pytest.mark.parametrize("bad", BAD)
def test_settings_refuse_bad_durations(bad: Any) -> None:
    message = r"must be (a finite number of seconds or a timedelta|> 0|>= 0), not"
    required: list[Callable[[], object]] = [
        lambda: WorkerSettings(lease_duration=bad),
        lambda: WorkerSettings(default_timeout=bad),
        lambda: WorkerSettings(schedule_poll_interval=bad),
        lambda: WorkerSettings(shutdown_grace=bad),
        lambda: RedisConfig(conn_timeout=bad),
        lambda: QueueSettings(result_ttl=bad),
        lambda: QueueSettings(idempotency_ttl=bad),
        lambda: BackoffPolicy(base=bad),
        lambda: BackoffPolicy(cap=bad),
    ]
    optional: list[Callable[[], object]] = [  # None turns these off (or derives them)
        lambda: WorkerSettings(heartbeat_interval=bad),
        lambda: WorkerSettings(loop_stall_limit=bad),
        lambda: RedisConfig(idle_timeout=bad),
        lambda: RedisConfig(max_lifetime=bad),
        lambda: RedisConfig(socket_timeout=bad),
    ]
    for make in required + ([] if bad is None else optional):
        with pytest.raises(ConfigurationError, match=message):
            make()


def test_backoff_refuses_bad_factor_and_jitter() -> None:
    for factor in (0.5, math.nan, math.inf, "2", True):
        with pytest.raises(ConfigurationError, match="backoff factor"):
            BackoffPolicy(factor=factor)  # type: ignore[arg-type]
    for jitter in (2, math.nan, "0.1"):
        with pytest.raises(ConfigurationError, match="backoff jitter"):
            BackoffPolicy(jitter=jitter)  # type: ignore[arg-type]


def test_heartbeat_left_out_is_a_third_of_the_lease() -> None:
    assert (WorkerSettings().lease_duration, WorkerSettings().heartbeat_interval) == (30.0, 10.0)
    assert WorkerSettings(lease_duration=2).heartbeat_interval == pytest.approx(2 / 3)
    assert WorkerSettings(lease_duration=dt.timedelta(minutes=3)).heartbeat_interval == 60.0
    assert WorkerSettings(lease_duration=2, heartbeat_interval=1).heartbeat_interval == 1
    for heartbeat in (2, 3, dt.timedelta(seconds=2)):
        with pytest.raises(ConfigurationError, match=r"heartbeat_interval .* must be shorter"):
            WorkerSettings(lease_duration=2, heartbeat_interval=heartbeat)


def test_engine_and_builder_take_durations_and_derive_the_heartbeat() -> None:
    engine = WorkerEngine(lease_duration=2)  # refused before: the heartbeat stayed 10 s
    assert engine.worker_settings.heartbeat_interval == pytest.approx(2 / 3)
    built = (
        WorkerEngine.builder()
        .lease_duration(dt.timedelta(seconds=6))
        .shutdown_grace(dt.timedelta(seconds=3))
        .default_timeout(dt.timedelta(minutes=2))
        .schedule_poll_interval(dt.timedelta(seconds=1))
        .loop_stall_limit(dt.timedelta(0))
        .backoff(base=dt.timedelta(seconds=2), cap=dt.timedelta(minutes=10))
        .engine()
    )
    settings = built.worker_settings
    assert (settings.lease_duration, settings.heartbeat_interval) == (6.0, 2.0)
    assert (settings.shutdown_grace, settings.default_timeout) == (3.0, 120.0)
    assert (settings.schedule_poll_interval, settings.loop_stall_limit) == (1.0, 0.0)
    assert (settings.backoff.base, settings.backoff.cap) == (2.0, 600.0)
    with pytest.raises(ConfigurationError, match="heartbeat_interval"):
        WorkerEngine.builder().lease_duration(2).heartbeat_interval(5).engine()
    assert WorkerEngine.builder().heartbeat_interval(5).engine().worker_settings == WorkerSettings(
        heartbeat_interval=5
    )


def test_configure_moves_a_derived_heartbeat_and_keeps_a_given_one() -> None:
    engine = WorkerEngine()
    engine.configure(lease_duration=3)
    assert engine.worker_settings.heartbeat_interval == 1.0
    engine.configure(lease_duration=dt.timedelta(seconds=90))
    assert engine.worker_settings.heartbeat_interval == 30.0
    engine.configure(heartbeat_interval=20)
    engine.configure(lease_duration=60)  # the given heartbeat stays
    assert engine.worker_settings.heartbeat_interval == 20
    with pytest.raises(ConfigurationError, match="heartbeat_interval"):
        engine.configure(lease_duration=10)
    assert engine.worker_settings.lease_duration == 60  # a refused change changes nothing
    engine.configure(lease_duration=3, heartbeat_interval=1)  # both at once
    assert (engine.worker_settings.lease_duration, engine.worker_settings.heartbeat_interval) == (
        3,
        1,
    )
    engine.configure(heartbeat_interval=None, lease_duration=12)  # back to derived
    assert engine.worker_settings.heartbeat_interval == 4.0
    with pytest.raises(ConfigurationError, match="unknown engine setting 'colour'"):
        engine.configure(max_workers=2, colour="blue")
    assert engine.worker_settings.max_workers == 10  # nothing applied


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10", 10.0), ("2.5", 2.5), ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0)],
)
def test_cli_durations(text: str, expected: float) -> None:
    assert _duration(text) == expected
    args = _parser().parse_args(["enqueue", "t", "--delay", text, "--timeout", text])
    assert (args.delay, args.timeout) == (expected, expected)


def test_cli_refuses_what_is_not_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("soon", "5x", "m", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a duration"):
            _duration(text)
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["enqueue", "t", "--delay", "5 minutes"])
    assert exit_.value.code == 2
    assert "is not a duration" in capsys.readouterr().err
