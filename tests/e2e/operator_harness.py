"""Helpers for the operator's end-to-end tests: the CRD, the operator and workers as real
subprocesses, ActivityQueue manifests, and reads of what the operator wrote."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from runnerq import ActivityClient, QueueStats
from tests.support.processes import terminate
from tests.support.redis_server import free_port

from .cluster import ControlPlane
from .waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = REPO_ROOT / "operator" / "crd" / "activityqueues.runnerq.io.yaml"
RBAC_FILE = REPO_ROOT / "operator" / "rbac" / "clusterrole.yaml"
PEERING_CRD_FILE = REPO_ROOT / "operator" / "crd" / "kopf-peering.yaml"
PEERING_RBAC_FILE = REPO_ROOT / "operator" / "rbac" / "peering-clusterrole.yaml"
NOOP_APP = "tests.e2e.apps.noop_app:engine"
RUNNERQ = Path(sys.executable).parent / "runnerq"


def install_crd(plane: ControlPlane) -> None:
    # --force-conflicts: a Helm release of an earlier test (uninstalled, CRD kept) may still
    # own .spec.versions; the tests want the source CRD whoever applied it last.
    plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=runnerq-e2e",
        "-f", str(CRD_FILE),
    )  # fmt: skip
    plane.kubectl(
        "wait", "--for=condition=Established", "crd/activityqueues.runnerq.io", "--timeout=60s"
    )
    # Established comes before the resource's storage serves lists (429 until then).
    wait_for(
        lambda: plane.kubectl("get", "activityqueues", "-A", check=False).returncode == 0,
        what="ActivityQueues listable",
    )


def install_peering_crds(plane: ControlPlane) -> None:
    plane.kubectl(
        "apply", "--server-side", "--field-manager=runnerq-e2e", "-f", str(PEERING_CRD_FILE)
    )
    for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    wait_for(
        lambda: plane.kubectl("get", "kopfpeerings", "-A", check=False).returncode == 0,
        what="KopfPeerings listable",
    )


def activity_queue(
    name: str, namespace: str, redis_url: str, queue: str, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "redis": {"url": redis_url},
        "worker": {"image": "runnerq-e2e.invalid/worker:0", "app": NOOP_APP},
        "queue": queue,
    }
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            merged = {**body[key], **value}
            body[key] = {k: v for k, v in merged.items() if v is not None}
        else:
            body[key] = value
    return {
        "apiVersion": "runnerq.io/v1alpha1",
        "kind": "ActivityQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


class OperatorProcess:
    """``python -m runnerq_operator --namespace NS`` with its own kubeconfig and ports;
    ``env`` adds (``RUNNERQ_OPERATOR_*``) variables."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log_path
        self.env = dict(env or {})
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "RUNNERQ_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "RUNNERQ_OPERATOR_METRICS_HOST": "127.0.0.1",
            "RUNNERQ_OPERATOR_STATUS_INTERVAL": "0",
            **self.env,
        }
        command = [
            sys.executable, "-m", "runnerq_operator",
            "--namespace", self.namespace,
            "--liveness", f"http://127.0.0.1:{self.health_port}/healthz",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self.healthy, what=f"operator liveness (log: {self.log_path})", timeout=60)
        return self

    def _get(self, port: int, path: str) -> tuple[int, str]:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"the operator exited with {self.process.returncode}:\n{self.log()}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), ""
        except OSError:
            return 0, ""

    def healthy(self) -> bool:
        return self._get(self.health_port, "/healthz")[0] == 200

    def health(self) -> dict[str, Any] | None:
        """kopf's ``/healthz`` JSON (probe id -> result), None when it does not answer 200."""
        status, text = self._get(self.health_port, "/healthz")
        return json.loads(text) if status == 200 else None

    def metrics(self) -> str:
        status, text = self._get(self.metrics_port, "/metrics")
        assert status == 200, status
        return text

    def metric(self, sample: str) -> float:
        """One sample of /metrics, e.g. ``runnerq_operator_queue_polls_total``; 0 when absent
        (a labelled counter appears with its first increment)."""
        return metric_value(self.metrics(), sample)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        process, self.process = self.process, None
        terminate(process)


class WorkerProcess:
    """A real ``runnerq worker`` of the noop app."""

    def __init__(
        self,
        redis_url: str,
        queue: str,
        log_path: Path,
        max_workers: int = 50,
        hostname: str | None = None,
    ) -> None:
        command = [
            str(RUNNERQ), "worker", NOOP_APP,
            "--redis-url", redis_url, "--queue", queue, "--max-workers", str(max_workers),
        ]  # fmt: skip
        if hostname is not None:
            # Its own UTS namespace: the worker's id (and lease tokens) name that host, as
            # they would name the pod it ran in.
            shell = 'hostname "$0" && exec "$@"'
            command = ["unshare", "--uts", "sh", "-c", shell, hostname, *command]
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        terminate(self.process, timeout=30)


def enqueue(redis_url: str, queue: str, count: int, payload: Any = None) -> None:
    async def run() -> None:
        async with ActivityClient(redis_url, queue) as client:
            await client.enqueue_many([("noop", payload) for _ in range(count)])

    asyncio.run(run())


def stats(redis_url: str, queue: str) -> QueueStats:
    async def run() -> QueueStats:
        async with ActivityClient(redis_url, queue) as client:
            return await client.get_stats()

    return asyncio.run(run())


def queue_config(redis_url: str, queue: str) -> dict[str, str]:
    async def run() -> dict[str, str]:
        async with ActivityClient(redis_url, queue) as client:
            return await client.get_queue_config()

    return asyncio.run(run())


def get(plane: ControlPlane, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "yaml", "--ignore-not-found")
    if not result.stdout.strip():
        return None
    found = yaml.safe_load(result.stdout)
    assert isinstance(found, dict)
    return found


def replicas(plane: ControlPlane, namespace: str, name: str) -> int | None:
    found = get(plane, "deployment", f"{name}-worker", namespace)
    return None if found is None else int(found["spec"]["replicas"])


def condition(plane: ControlPlane, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
    found = get(plane, "activityqueue", name, namespace) or {}
    for item in found.get("status", {}).get("conditions", []):
        if item.get("type") == type_:
            return dict(item)
    return None


def events(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    found = plane.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    return list(found.get("items", []))


def reasons(plane: ControlPlane, namespace: str, name: str) -> set[str]:
    return {str(e.get("reason")) for e in events(plane, namespace, name)}


def holds_for(probe: Any, seconds: float, what: str) -> None:
    """Check that ``probe()`` stays true for ``seconds`` (a negative can only be observed
    over time): fails at the first false reading."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        assert value, f"{what} stopped holding (last: {value!r})"
        time.sleep(0.2)


def metric_value(exposition: str, sample: str) -> float:
    """The value of ``sample`` (name and labels exactly as exposed) in Prometheus text."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", exposition, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def refused(log: str) -> bool:
    """Whether an operator's log shows the API refusing it something (Forbidden, HTTP 403).
    A bare substring " 403" also matched numbers such as a random port ("port 40341")."""
    return "Forbidden" in log or re.search(r"(?<![\w.:,])403(?!\d)", log) is not None


def log_tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def service_account_kubeconfig(
    plane: ControlPlane, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a bound token."""
    token = plane.kubectl("create", "token", account, "-n", namespace, "--duration=2h").stdout
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token.strip()}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def can_set_hostname() -> bool:
    """True when ``unshare --uts`` works here (root, or user namespaces allowed)."""
    probe = ["unshare", "--uts", "sh", "-c", "hostname runnerq-probe"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
