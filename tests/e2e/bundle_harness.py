"""Helpers for the install tests (Helm chart, manifests/, images): render the chart, read
what it installed, and run what its pods would run, as real processes, with the pods' own
arguments, environment (Secrets and ConfigMaps resolved, ``$(VAR)`` expanded as the kubelet
does) and ServiceAccount token.

Pods in the test cluster never run containers (kwok at most marks them Ready), so a test runs
the operator's and the workers' containers here: as subprocesses of this checkout
(test_chart.py, test_manifests.py) or as the real images under podman (test_images.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from runnerq import ActivityClient
from tests.support.processes import terminate
from tests.support.redis_server import free_port

from .cluster import ControlPlane
from .operator_harness import REPO_ROOT
from .waiting import wait_for

CHART_DIR = REPO_ROOT / "charts" / "runnerq"
MANIFESTS_DIR = REPO_ROOT / "manifests"
EXAMPLES_DIR = MANIFESTS_DIR / "examples"
CRD_NAME = "activityqueues.runnerq.io"
#: URL-safe: a password from passwordSecretRef is put into the workers' URL as it is.
REDIS_PASSWORD = "e2e-S3cret_pw"

#: The worker app of manifests/examples (``mailer.tasks:engine``), as a user would write it.
MAILER_TASKS = '''\
"""The app of manifests/examples/activityqueue.yaml: runnerq worker mailer.tasks:engine."""

from typing import Any

from runnerq import ActivityContext, WorkerEngine

engine = WorkerEngine()


@engine.activity("send_email")
async def send_email(payload: Any, ctx: ActivityContext) -> dict[str, Any]:
    return {"delivered_to": payload["to"], "attempt": ctx.retry_count + 1}
'''


def write_mailer_app(directory: Path) -> Path:
    """``directory/mailer/tasks.py`` (the example app); returns ``directory``."""
    package = directory / "mailer"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(MAILER_TASKS)
    return directory


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def load_example(name: str) -> dict[str, Any]:
    (doc,) = documents((EXAMPLES_DIR / name).read_text())
    return doc


def helm_template(
    plane: ControlPlane, release: str, namespace: str, *args: str, chart: Path = CHART_DIR
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders (for the control plane's Kubernetes version)."""
    result = plane.helm(
        "template", release, str(chart), "--namespace", namespace,
        "--kube-version", plane.kubernetes_version, *args,
    )  # fmt: skip
    return documents(result.stdout)


def find(
    objects: Sequence[Mapping[str, Any]], kind: str, name: str | None = None
) -> dict[str, Any]:
    found = [
        dict(o)
        for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def adopt_crd(plane: ControlPlane, release: str, namespace: str) -> None:
    """Let ``helm install`` take over the CRD if it is already there (applied by kubectl by
    other tests, or kept by an uninstalled release): Helm adopts objects that carry its
    ownership label and annotations (docs/kubernetes.md says the same to users)."""
    if plane.kubectl("get", "crd", CRD_NAME, "--ignore-not-found", "-o", "name").stdout.strip():
        plane.kubectl("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")
        plane.kubectl(
            "annotate", "--overwrite", "crd", CRD_NAME,
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )  # fmt: skip


def get_object(plane: ControlPlane, kind: str, name: str, namespace: str | None = None) -> Any:
    """The object as a dict, or None when it does not exist."""
    scope = ["-n", namespace] if namespace else []
    result = plane.kubectl("get", kind, name, *scope, "-o", "yaml", "--ignore-not-found")
    return yaml.safe_load(result.stdout) if result.stdout.strip() else None


def wait_available(plane: ControlPlane, namespace: str, deployment: str) -> None:
    """Wait for the Deployment's pod to be created (admitted: e.g. by Pod Security) and, with
    kwok's fake node, to be Ready."""

    def available() -> bool:
        found = get_object(plane, "deployment", deployment, namespace) or {}
        status = found.get("status", {})
        if plane.has_nodes:
            return bool(status.get("availableReplicas") == 1)
        return bool(status.get("replicas") == 1)

    wait_for(available, what=f"deployment {namespace}/{deployment} available", timeout=90)


def _secret_value(plane: ControlPlane, namespace: str, name: str, key: str) -> str:
    secret = get_object(plane, "secret", name, namespace)
    assert secret is not None, f"secret {namespace}/{name} not found"
    return base64.b64decode(secret["data"][key]).decode()


def _configmap_data(plane: ControlPlane, namespace: str, name: str) -> dict[str, str]:
    found = get_object(plane, "configmap", name, namespace)
    assert found is not None, f"configmap {namespace}/{name} not found"
    return dict(found.get("data", {}))


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: defined variables are replaced, undefined ones are
    left as they are, ``$$`` is one ``$``. Not recursive."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def container_env(
    plane: ControlPlane, namespace: str, container: Mapping[str, Any]
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: ``envFrom`` first, then ``env``
    in order, Secrets and ConfigMaps read from the API, ``$(VAR)`` expanded."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = _configmap_data(plane, namespace, source["configMapRef"]["name"])
        else:
            secret = get_object(plane, "secret", source["secretRef"]["name"], namespace)
            data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
        env.update({prefix + k: v for k, v in data.items()})
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[name] = _secret_value(plane, namespace, ref["name"], ref["key"])
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[name] = _configmap_data(plane, namespace, ref["name"])[ref["key"]]
        else:
            raise AssertionError(f"env var source not supported by this harness: {item}")
    return env


def container_command(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded."""
    return [
        expand(str(a), env) for a in [*container.get("command", []), *container.get("args", [])]
    ]


def replace_flag(command: Sequence[str], flag: str, value: str) -> list[str]:
    """``command`` with the value of ``flag`` (``--flag V`` or ``--flag=V``) replaced."""
    result = list(command)
    for i, arg in enumerate(result):
        if arg == flag:
            result[i + 1] = value
            return result
        if arg.startswith(flag + "="):
            result[i] = f"{flag}={value}"
            return result
    raise AssertionError(f"{flag} not in {command}")


def first_container(workload: Mapping[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"]["containers"][0])


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


class DeploymentOperator:
    """The operator container of an installed Deployment, run here as a subprocess: the
    container's own arguments and environment (only the two ports moved to free loopback
    ones; ``metadata.name`` references get ``pod_name``), with a kubeconfig that holds the
    Deployment's ServiceAccount token."""

    def __init__(
        self,
        deployment: Mapping[str, Any],
        kubeconfig: Path,
        log_path: Path,
        *,
        pod_name: str | None = None,
    ) -> None:
        container = first_container(deployment)
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.pod_name = pod_name or f"{deployment['metadata']['name']}-e2e"
        env: dict[str, str] = {}
        for item in container.get("env", []):
            field = item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif field == "metadata.name":
                env[item["name"]] = self.pod_name
            else:
                raise AssertionError(f"env var source not supported by this harness: {item}")
        args = [expand(str(a), env) for a in container.get("args", [])]
        self.args = replace_flag(args, "--liveness", f"http://127.0.0.1:{self.health_port}/healthz")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RUNNERQ_")}
        self.env = {
            **inherited,
            **env,
            "KUBECONFIG": str(kubeconfig),
            "RUNNERQ_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "RUNNERQ_OPERATOR_METRICS_HOST": "127.0.0.1",
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DeploymentOperator:
        command = [sys.executable, "-m", "runnerq_operator", *self.args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self.healthy, what=f"operator liveness (log: {self.log_path})", timeout=60)
        return self

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"the operator exited with {self.process.returncode}:\n{self.log()}"
            )
        return _http_status(f"http://127.0.0.1:{self.health_port}/healthz") == 200

    def health(self) -> dict[str, Any] | None:
        """kopf's ``/healthz`` JSON, None when it does not answer."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
            ) as response:
                found = json.loads(response.read())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        process, self.process = self.process, None
        terminate(process)

    def assert_never_forbidden(self) -> None:
        assert_no_rbac_denial(self.log())


class PodProcess:
    """A container of a pod template run here as a subprocess: its command and arguments, its
    environment as the kubelet would build it, and nothing else of this test's environment
    but PATH and the virtualenv (``cwd`` plays the image's working directory)."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
    ) -> None:
        program = shutil.which(command[0], path=str(Path(sys.executable).parent))
        assert program is not None, f"{command[0]} not found next to {sys.executable}"
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [program, *command[1:]],
                cwd=cwd,
                env={**base, **env, "PYTHONPATH": str(cwd)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        terminate(self.process, timeout=30)
        return self.process.returncode


#: How the API server words an RBAC refusal (a 403 for a terminating namespace is not one).
_RBAC_DENIAL = re.compile(r'User "[^"]+" cannot [a-z]+ resource')


def assert_no_rbac_denial(log: str) -> None:
    """The operator was never refused a permission (its RBAC lacks nothing it uses)."""
    denials = [line for line in log.splitlines() if _RBAC_DENIAL.search(line)]
    assert denials == [], "\n".join(denials[:10])


def http_ok(port: int, path: str) -> bool:
    return _http_status(f"http://127.0.0.1:{port}{path}") == 200


def activity_result(redis_url: str, queue: str, activity_id: str, timeout: float = 30) -> Any:
    """The result of one activity, waited for through the client (as a producer would)."""

    async def run() -> Any:
        async with ActivityClient(redis_url, queue) as client:
            return await client.future(activity_id).get_result(timeout=timeout)

    return asyncio.run(run())
