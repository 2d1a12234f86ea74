"""``make k8s-demo``: the Kubernetes path on this machine, from start to end, in about a minute.

Starts the local control plane of the e2e tests (built once, then cached), installs the chart,
runs the chart's operator and one worker as local processes, applies the example queue with a
short scale-down window, enqueues a burst, and prints the worker Deployment's replicas going
0 -> N -> 0 with the queue's Events. Then it stops everything it started (also on Ctrl-C).

What is real and what stands in:

- real: etcd, kube-apiserver, kube-controller-manager and kube-scheduler; the chart as
  ``helm install`` applies it (CRD, RBAC, ServiceAccount, Deployment); Redis; the operator
  (``python -m runnerq_operator`` with the chart Deployment's own arguments and environment,
  logged in with the chart's ServiceAccount token); one ``runnerq worker``.
- stand-ins: the node is kwok's, so pods are "Running" without containers. The chart's
  operator pod is one of them (its image is never pulled; the operator runs here as a
  process), and so are the worker Deployment's pods: the replicas are real decisions, the
  activities are run by the local worker process.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the harness lives in tests/e2e
    sys.path.insert(0, str(ROOT))

from tests.e2e.binaries import ensure_binaries  # noqa: E402
from tests.e2e.bundle_harness import DeploymentOperator, wait_available  # noqa: E402
from tests.e2e.cluster import ControlPlane, start_control_plane  # noqa: E402
from tests.e2e.operator_harness import (  # noqa: E402
    NOOP_APP,
    WorkerProcess,
    enqueue,
    service_account_kubeconfig,
    stats,
)
from tests.e2e.waiting import wait_for  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

RELEASE = "runnerq"
SYSTEM_NAMESPACE = "runnerq-system"
NAMESPACE = "demo"
QUEUE = "emails"
EXAMPLE = ROOT / "manifests" / "examples" / "activityqueue.yaml"


class Demo:
    def __init__(self, activities: int, scale_down_seconds: int) -> None:
        self.activities = activities
        self.scale_down_seconds = scale_down_seconds
        self.started = time.monotonic()
        #: Every process this demo started, to show that none is left.
        self.pids: list[int] = []

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def run(self, stack: contextlib.ExitStack, workdir: Path) -> bool:
        binaries = ensure_binaries(progress=sys.stderr)
        plane = stack.enter_context(start_control_plane(binaries))
        self.pids += [s.process.pid for s in plane.servers]
        nodes = f", kwok node {plane.node_name}" if plane.node_name else ", no nodes"
        self.say(f"control plane {plane.kubernetes_version} up on {plane.server}{nodes}")

        self.install_chart(plane)
        redis = stack.enter_context(RedisServer())  # started
        assert redis.process is not None
        self.pids.append(redis.process.pid)
        self.say(f"redis-server on 127.0.0.1:{redis.port}")

        operator = self.start_operator(plane, workdir)
        stack.callback(operator.stop)
        self.apply_queue(plane, redis.url)

        # Read the replicas before the burst: the operator polls every second and may scale
        # up before a first read made after the enqueue (then the demo never sees the 0).
        watch = ReplicaWatch(plane, self)
        enqueue(redis.url, QUEUE, self.activities, {"sleep": 0.05})
        self.say(f"enqueued {self.activities} activities; no worker runs yet")
        peak = watch.until(lambda n: n > 0, timeout=60, what="a scale-up")

        worker = WorkerProcess(redis.url, QUEUE, workdir / "worker.log", max_workers=20)
        stack.callback(worker.stop)
        self.pids.append(worker.process.pid)
        self.say(f"worker started: runnerq worker {NOOP_APP} --queue {QUEUE} (a local process)")
        wait_for(
            lambda: stats(redis.url, QUEUE).completed == self.activities,
            what="the queue drained",
            timeout=120,
        )
        self.say(f"queue drained: {self.activities} completed; the scale-down window starts")
        # The drained queue's: the first poll after the drain may still count the last ones
        # in flight (then it says "4 replicas recommended").
        held = wait_for(
            lambda: _drained(stabilizing(plane)), what="Scaling=Stabilizing at 0", timeout=30
        )
        self.say(f"Scaling condition: {held}")
        watch.until(lambda n: n == 0, timeout=self.scale_down_seconds + 60, what="zero")
        self.report(plane)
        return watch.history[0] == 0 and peak > 0 and watch.history[-1] == 0

    def install_chart(self, plane: ControlPlane) -> None:
        plane.helm(
            "install", RELEASE, str(ROOT / "charts" / "runnerq"),
            "--namespace", SYSTEM_NAMESPACE, "--create-namespace",
        )  # fmt: skip
        wait_available(plane, SYSTEM_NAMESPACE, f"{RELEASE}-operator")
        self.say(
            f"helm install {RELEASE} charts/runnerq -n {SYSTEM_NAMESPACE}: CRD, RBAC and the"
            " operator Deployment (its pod is a kwok stand-in: no image is pulled)"
        )

    def start_operator(self, plane: ControlPlane, workdir: Path) -> DeploymentOperator:
        deployment = plane.kubectl_json(
            "get", "deployment", f"{RELEASE}-operator", "-n", SYSTEM_NAMESPACE
        )
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        kubeconfig = service_account_kubeconfig(
            plane, SYSTEM_NAMESPACE, account, workdir / "operator.kubeconfig"
        )
        operator = DeploymentOperator(deployment, kubeconfig, workdir / "operator.log").start()
        assert operator.process is not None
        self.pids.append(operator.process.pid)
        self.say(
            "operator started here: python -m runnerq_operator, with the chart Deployment's"
            f" arguments and its ServiceAccount {account}'s token (log: {operator.log_path})"
        )
        return operator

    def apply_queue(self, plane: ControlPlane, redis_url: str) -> None:
        plane.kubectl("create", "namespace", NAMESPACE)
        plane.kubectl(
            "create", "secret", "generic", "redis", "-n", NAMESPACE,
            f"--from-literal=url={redis_url}",
        )  # fmt: skip
        queue: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
        queue["metadata"]["namespace"] = NAMESPACE
        queue["spec"]["worker"]["app"] = NOOP_APP
        queue["spec"]["scaling"].update(
            pollIntervalSeconds=1, scaleDownStabilizationSeconds=self.scale_down_seconds
        )
        plane.apply(queue)
        self.say(
            f"kubectl apply -f manifests/examples/activityqueue.yaml (-n {NAMESPACE}, app"
            f" {NOOP_APP}, pollIntervalSeconds 1, scaleDownStabilizationSeconds"
            f" {self.scale_down_seconds})"
        )
        wait_for(lambda: "True" in aq_line(plane), what="the queue Ready", timeout=60)
        print(plane.kubectl("get", "aq", "-n", NAMESPACE).stdout, end="", flush=True)

    def report(self, plane: ControlPlane) -> None:
        print(plane.kubectl("get", "aq", "-n", NAMESPACE, "-o", "wide").stdout, end="")
        events = plane.kubectl(
            "get", "events", "-n", NAMESPACE,
            "--field-selector", f"involvedObject.name={QUEUE}", "--sort-by=.firstTimestamp",
            "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
        )  # fmt: skip
        print(f"Events of ActivityQueue {QUEUE}:\n{events.stdout}", end="", flush=True)


def stabilizing(plane: ControlPlane) -> str | None:
    """The Scaling condition's message while a stabilization window holds the replicas."""
    found = plane.kubectl_json("get", "aq", QUEUE, "-n", NAMESPACE)
    for item in found.get("status", {}).get("conditions", []):
        if item.get("type") == "Scaling" and item.get("reason") == "Stabilizing":
            return str(item.get("message"))
    return None


def _drained(message: str | None) -> str | None:
    return message if message is not None and message.startswith("0 replicas") else None


def aq_line(plane: ControlPlane) -> str:
    found = plane.kubectl("get", "aq", QUEUE, "-n", NAMESPACE, "--no-headers", check=False)
    return found.stdout


class ReplicaWatch:
    """The worker Deployment's replicas, printed whenever they change."""

    def __init__(self, plane: ControlPlane, demo: Demo) -> None:
        self.plane = plane
        self.demo = demo
        self.history: list[int] = [self.read()]
        demo.say(f"{QUEUE}-worker replicas: {self.history[0]}")

    def read(self) -> int:
        found = self.plane.kubectl_json("get", "deployment", f"{QUEUE}-worker", "-n", NAMESPACE)
        return int(found["spec"]["replicas"])

    def until(self, done: Any, *, timeout: float, what: str) -> int:
        """Poll until ``done(replicas)``; returns the highest count seen meanwhile."""
        deadline = time.monotonic() + timeout
        peak = self.history[-1]
        while time.monotonic() < deadline:
            now = self.read()
            if now != self.history[-1]:
                self.demo.say(f"{QUEUE}-worker replicas: {self.history[-1]} -> {now}")
                self.history.append(now)
            peak = max(peak, now)
            if done(now):
                return peak
            time.sleep(0.25)
        raise TimeoutError(f"no {what} within {timeout:.0f}s (replicas {self.history})")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stopped_on_signals() -> Iterator[None]:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make k8s-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=300)
    parser.add_argument("--scale-down-seconds", type=int, default=10)
    args = parser.parse_args(argv)
    demo = Demo(args.activities, args.scale_down_seconds)
    ok = False
    with _stopped_on_signals(), tempfile.TemporaryDirectory(prefix="runnerq-demo-") as tmp:
        try:
            with contextlib.ExitStack() as stack:
                ok = demo.run(stack, Path(tmp))
                demo.say("stopping the worker, the operator, Redis and the control plane")
        except KeyboardInterrupt:
            demo.say("interrupted: everything it started is stopped")
            return 130
        except (TimeoutError, AssertionError, subprocess.CalledProcessError) as exc:
            detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else ""
            print(f"k8s-demo failed: {exc}\n{detail}", file=sys.stderr)
            return 1
    left = [pid for pid in demo.pids if running(pid)]
    if left:
        print(f"k8s-demo: processes still running: {left}", file=sys.stderr)
        return 1
    demo.say(f"stopped; nothing left running (pids {' '.join(map(str, demo.pids))})")
    if not ok:
        print("k8s-demo: the replicas did not go 0 -> N -> 0", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
