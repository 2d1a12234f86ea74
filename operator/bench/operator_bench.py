"""Benchmark (not a test): one operator serving many ActivityQueues on the test control plane.

Prints, for N queues (default 200) polled every P seconds:

- Redis round trips per queue per poll, and Redis commands per queue per poll;
- the operator's CPU (share of one core) and resident memory in steady state;
- the time from a queue surge (activities enqueued at once) to the patched replicas, over
  several surges of different queues.

Run from the repository root (builds the control plane on first use)::

    .venv/bin/python operator/bench/operator_bench.py --queues 200 --poll 5

Everything listens on 127.0.0.1; every loop has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import redis  # noqa: E402
from runnerq_operator.kube import KubeApi, object_path  # noqa: E402

from runnerq import ActivityClient  # noqa: E402
from tests.e2e.binaries import ensure_binaries  # noqa: E402
from tests.e2e.cluster import start_control_plane  # noqa: E402
from tests.e2e.operator_harness import OperatorProcess, activity_queue, install_crd  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait(probe: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


async def surge_to_replicas(
    api: KubeApi, namespace: str, name: str, url: str, queue: str, count: int, want: int
) -> float:
    path = object_path("apps/v1", "deployments", namespace, f"{name}-worker")
    async with ActivityClient(url, queue) as client:
        await client.enqueue_many([("noop", None) for _ in range(count)])
    started = time.monotonic()
    deadline = started + 60
    while time.monotonic() < deadline:
        found = await api.get(path)
        if found is not None and found["spec"].get("replicas") == want:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{name} did not reach {want} replicas")


async def surges(args: argparse.Namespace, namespace: str, url: str) -> list[float]:
    api = KubeApi()
    try:
        times = []
        rng = random.Random(5)
        for i in range(args.surges):
            name = f"q{i:03d}"
            # A random phase against the poll ticks: surges come at any moment.
            await asyncio.sleep(rng.uniform(0, args.poll))
            times.append(
                await surge_to_replicas(
                    api, namespace, name, url, f"bench.{name}", args.surge_size, args.surge_replicas
                )
            )
        return times
    finally:
        await api.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=200)
    parser.add_argument("--poll", type=int, default=5, help="pollIntervalSeconds of every queue")
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady state")
    parser.add_argument("--surges", type=int, default=10)
    parser.add_argument("--surge-size", type=int, default=250)
    parser.add_argument("--surge-replicas", type=int, default=3)
    args = parser.parse_args()
    target = -(-args.surge_size // args.surge_replicas)

    binaries = ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="runnerq-operator-bench-"))
    with start_control_plane(binaries, with_nodes=False) as plane, RedisServer() as redis_server:
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        install_crd(plane)
        namespace = "bench"
        plane.kubectl("create", "namespace", namespace)
        operator = OperatorProcess(plane.kubeconfig, namespace, workdir / "operator.log").start()
        pid = operator.process.pid if operator.process else 0
        try:
            started = time.monotonic()
            queues = [
                activity_queue(
                    f"q{i:03d}", namespace, redis_server.url, f"bench.q{i:03d}",
                    scaling={"pollIntervalSeconds": args.poll, "targetPerReplica": target,
                             "maxReplicas": args.surge_replicas,
                             "scaleDownStabilizationSeconds": 600},
                )
                for i in range(args.queues)
            ]  # fmt: skip
            plane.apply(*queues)

            def all_ready() -> bool:
                text = operator.metrics()
                return metric(text, 'runnerq_operator_reconciles_total{result="ok"}') >= len(queues)

            wait(all_ready, f"{len(queues)} queues reconciled", timeout=600)
            reconciled = time.monotonic() - started

            r = redis.Redis(port=redis_server.port)
            before = operator.metrics()
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            commands0 = int(r.info("stats")["total_commands_processed"])
            time.sleep(args.steady)
            after = operator.metrics()
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            commands1 = int(r.info("stats")["total_commands_processed"])
            polls = metric(after, "runnerq_operator_queue_polls_total") - metric(
                before, "runnerq_operator_queue_polls_total"
            )
            trips = metric(after, "runnerq_operator_redis_round_trips_total") - metric(
                before, "runnerq_operator_redis_round_trips_total"
            )
            rounds = metric(after, "runnerq_operator_poll_duration_seconds_count") - metric(
                before, "runnerq_operator_poll_duration_seconds_count"
            )
            round_seconds = metric(after, "runnerq_operator_poll_duration_seconds_sum") - metric(
                before, "runnerq_operator_poll_duration_seconds_sum"
            )
            steady_cpu = (cpu1 - cpu0) / (t1 - t0)
            steady_rss = rss_mib(pid)

            times = asyncio.run(surges(args, namespace, redis_server.url))
        finally:
            operator.stop()
            subprocess.run(["rm", "-rf", str(workdir)], check=False)

    print(f"operator benchmark: {args.queues} ActivityQueues, poll every {args.poll}s")
    print(f"  all reconciled after            {reconciled:8.1f} s")
    print(f"  queue polls in {args.steady:.0f}s steady state  {polls:8.0f}")
    print(f"  Redis round trips / queue / poll {trips / max(polls, 1):8.4f}")
    print(f"  Redis commands / queue / poll    {(commands1 - commands0) / max(polls, 1):8.2f}")
    print(f"  poll round (read all, decide)   {1000 * round_seconds / max(rounds, 1):8.1f} ms mean")
    print(f"  operator CPU (steady)           {steady_cpu * 100:8.1f} % of one core")
    print(f"  operator RSS (steady)           {steady_rss:8.1f} MiB")
    print(
        f"  surge {args.surge_size} -> {args.surge_replicas} replicas: "
        f"median {statistics.median(times):.2f}s, max {max(times):.2f}s over {len(times)} queues"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
