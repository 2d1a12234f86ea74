"""The ``runnerq`` command and the examples, run as real processes against the test Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runnerq import ActivityClient, ActivityContext, ActivityError, Schedule, WorkerEngine
from tests.support.polling import eventually
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]


def runnerq(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runnerq", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_enqueue_stats_and_dlq_commands(redis_url: str, queue_name: str) -> None:
    env = {"RUNNERQ_REDIS_URL": redis_url, "RUNNERQ_QUEUE": queue_name}
    out = runnerq(
        "enqueue", "send_email", "--payload", '{"to": "a@b.c"}', "--priority", "high", env=env
    )
    assert out.returncode == 0, out.stderr
    activity_id = out.stdout.strip()
    stats = json.loads(runnerq("stats", "--json", env=env).stdout)
    assert stats["pending"] == 1
    assert stats["by_priority"]["high"] == 1
    human = runnerq("stats", env=env).stdout
    assert "pending      1" in human

    bad = runnerq("enqueue", "t", "--payload", "{not json", env=env)
    assert bad.returncode == 2
    assert "--payload is not JSON" in bad.stderr

    empty = runnerq("dlq", "list", env=env)
    assert "dead-letter queue is empty" in empty.stdout
    assert runnerq("dlq", "requeue", env=env).returncode == 2  # neither id nor --all
    assert activity_id


async def test_dlq_list_requeue_purge(
    redis_url: str, queue_name: str, client: ActivityClient
) -> None:
    engine = WorkerEngine(redis_url, queue_name)

    @engine.activity("no")
    async def no(payload: Any, ctx: ActivityContext) -> Any:
        raise ActivityError.non_retry("nope")

    import asyncio

    task = asyncio.create_task(engine.start(install_signal_handlers=False))
    futures = [await client.execute_activity("no", i) for i in range(3)]
    for f in futures:
        with pytest.raises(Exception, match="nope"):
            await f.get_result(timeout=10)
    await engine.stop()
    await task
    await engine.aclose()

    env = {"RUNNERQ_REDIS_URL": redis_url}
    listing = json.loads(runnerq("dlq", "list", "--json", "--queue", queue_name, env=env).stdout)
    assert [e["id"] for e in listing] == [f.activity_id for f in futures]
    assert listing[0]["error"] == "nope"
    one = runnerq("dlq", "requeue", futures[0].activity_id, "--queue", queue_name, env=env)
    assert one.returncode == 0
    assert (await client.get_stats()).pending == 1
    rest = runnerq("dlq", "requeue", "--all", "--queue", queue_name, env=env)
    assert "requeued 2" in rest.stdout
    assert (await client.get_stats()).pending == 3
    await client.execute_activity("no", 9)
    assert "purged 0" in runnerq("dlq", "purge", "--queue", queue_name, env=env).stdout


async def test_worker_command_with_health_and_metrics(
    redis_url: str, queue_name: str, client: ActivityClient
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runnerq",
            "worker",
            "examples.app:engine",
            "--metrics-port",
            str(port),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "RUNNERQ_REDIS_URL": redis_url,
            "RUNNERQ_QUEUE": queue_name,
            "RUNNERQ_MAX_WORKERS": "3",
        },
        stdin=subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: _http(port, "/readyz"), timeout=20, what="worker ready")
        assert await _http(port, "/healthz") == (200, "ok\n")
        future = (
            await client.activity("signup")
            .payload({"email": "ada@example.com", "avatar": "ada.png"})
            .execute()
        )
        result = await future.get_result(timeout=20)
        assert result["email"]["delivered_to"] == "ada@example.com"
        bad = await client.activity("send_email").payload({"to": "x@y.invalid"}).execute()
        with pytest.raises(Exception, match="cannot deliver"):
            await bad.get_result(timeout=20)
        status, text = await _http(port, "/metrics") or (0, "")
        assert status == 200
        assert f'runnerq_activity_completed_total{{queue="{queue_name}"}} 3.0' in text
        assert "runnerq_activity_failed_non_retry_total" in text
        # A schedule's ticks, per schedule as well as per queue.
        thumbs = Schedule("thumbs", "resize_image", every=1, payload={"name": "t.png"})
        await client.schedules.upsert(thumbs)
        labels = {"queue": queue_name, "schedule": "thumbs", "outcome": "fired"}

        async def ticked() -> bool:
            _, text = await _http(port, "/metrics") or (0, "")
            samples = [
                sample
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            ]
            per_schedule = [
                s.value
                for s in samples
                if s.name == "runnerq_schedule_ticks_total" and s.labels == labels
            ]
            per_queue = [
                s.value
                for s in samples
                if s.name == "runnerq_schedule_fired_total" and s.labels == {"queue": queue_name}
            ]
            return bool(per_schedule) and per_schedule[0] >= 1 and per_queue[0] >= per_schedule[0]

        await eventually(ticked, timeout=20, what="a tick counted for its schedule")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_worker_command_rejects_a_bad_app(redis_url: str) -> None:
    out = runnerq("worker", "examples.nothing_here:engine", "--redis-url", redis_url)
    assert out.returncode == 2
    assert "cannot import 'examples.nothing_here'" in out.stderr
    out = runnerq("worker", "examples.app", "--redis-url", redis_url)
    assert "package.module:engine" in out.stderr


def test_enqueue_wait_prints_result(redis_url: str, queue_name: str) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runnerq",
            "worker",
            "examples.app:engine",
            "--redis-url",
            redis_url,
            "--queue",
            queue_name,
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out = runnerq(
            "enqueue",
            "resize_image",
            "--payload",
            '{"name": "cat.png", "width": 400}',
            "--wait",
            "--wait-timeout",
            "20",
            "--redis-url",
            redis_url,
            "--queue",
            queue_name,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.splitlines()[1]) == {"thumbnail": "cat.png@100px"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_demo_with_embedded_redis() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RUNNERQ_REDIS_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "runnerq", "demo", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "started an embedded redis-server" in out.stdout
    assert "declined card is in the dead-letter queue: card declined" in out.stdout
    assert "payment attempt 3 succeeded" in out.stdout
    assert "completed=8" in out.stdout


def test_quickstart_example(redis_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT,
        env={**os.environ, "RUNNERQ_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello, Ada (priority high)"


async def _http(port: int, path: str) -> tuple[int, str] | None:
    import asyncio

    def get() -> tuple[int, str] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                return resp.status, resp.read().decode()
        except OSError:
            return None

    return await asyncio.to_thread(get)


def test_cli_connects_with_the_operator_configmap_and_the_password_env(queue_name: str) -> None:
    """A producer pod of a queue whose password is in a Secret: the env is exactly the
    operator's ConfigMap (loaded with envFrom, so ``$(RUNNERQ_REDIS_PASSWORD)`` in it is not
    expanded) plus RUNNERQ_REDIS_PASSWORD, here one that is not URL-safe."""
    from runnerq_operator.manifests import build_configmap
    from runnerq_operator.spec import parse_spec

    password = "s3cret/p@ss:w%rd?"
    with RedisServer(password=password) as server:
        spec = parse_spec(
            {
                "queue": queue_name,
                "redis": {
                    "url": f"redis://127.0.0.1:{server.port}/0",
                    "passwordSecretRef": {"name": "redis-auth"},
                },
                "worker": {"image": "app:1", "app": "examples.app:engine"},
            },
            "producer",
        )
        body = {"metadata": {"name": "producer", "namespace": "apps", "uid": "u"}}
        configmap = build_configmap(body, spec)["data"]
        assert "RUNNERQ_REDIS_URL" not in configmap
        assert "$(RUNNERQ_REDIS_PASSWORD)" in configmap["RUNNERQ_REDIS_URL_TEMPLATE"]
        base = {k: v for k, v in os.environ.items() if not k.startswith("RUNNERQ_")}
        env = {**base, **configmap, "RUNNERQ_REDIS_PASSWORD": password}

        def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "runnerq", *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )

        out = run("enqueue", "send_email", "--payload", '{"to": "a@b.c"}', env=env)
        assert out.returncode == 0, out.stderr
        stats = run("stats", "--json", env=env)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["pending"] == 1

        # Without the password: a clear error naming the Secret, no connection attempt.
        missing = run("stats", env={k: v for k, v in env.items() if k != "RUNNERQ_REDIS_PASSWORD"})
        assert missing.returncode == 2
        assert "RUNNERQ_REDIS_PASSWORD is not set" in missing.stderr
        assert "'redis-auth/password'" in missing.stderr
        # A wrong password: Redis refuses, and the message does not show it.
        wrong = run("stats", env={**env, "RUNNERQ_REDIS_PASSWORD": "not-it/@"})
        assert wrong.returncode != 0
        assert "not-it" not in wrong.stderr
        assert password not in wrong.stderr
