"""The container images, built with podman by hack/images.sh and run for real:

- the worker image (with an app added on top, as users build theirs) drains a password-protected
  Redis, serves its probes and metrics, and stops cleanly on SIGTERM, as a non-root user on a
  read-only root filesystem with no capabilities;
- the operator image, run as the chart's Deployment would run it (its arguments, its
  environment, the ServiceAccount token mounted where a pod has it, kubernetes.default.svc
  resolving to the API server), reconciles the example ActivityQueue on the test control
  plane; the example producer Job's container enqueues and a container of the worker
  Deployment the operator made drains the queue.

Slow on first use (debootstrap base, dependency wheels: both cached outside the repository).
Skipped only when podman cannot run a container on this machine (`hack/images.sh check`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerq import ActivityClient
from tests.support.redis_server import RedisServer, free_port

from .bundle_harness import (
    CHART_DIR,
    REDIS_PASSWORD,
    activity_result,
    adopt_crd,
    assert_no_rbac_denial,
    container_command,
    container_env,
    first_container,
    get_object,
    http_ok,
    load_example,
    replace_flag,
    wait_available,
    write_mailer_app,
)
from .cluster import ControlPlane
from .operator_harness import (
    REPO_ROOT,
    condition,
    log_tail,
    replicas,
    stats,
)
from .waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

SCRIPT = REPO_ROOT / "hack" / "images.sh"
CONTAINERS_CONF = REPO_ROOT / "docker" / "containers.conf"
TAG = "e2e"
APP_IMAGE = f"localhost/runnerq-e2e/mailer:{TAG}"
#: The flags that give a container what the chart's and the operator's security contexts
#: give a pod: no capabilities, no privilege escalation, a read-only root filesystem.
LOCKED_DOWN = ["--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"]


@dataclass(frozen=True)
class Images:
    worker: str
    operator: str
    app: str


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", "--runtime", "runc", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """Both images built from this checkout, and an app image built on the worker image."""
    check = subprocess.run(["bash", str(SCRIPT), "check"], capture_output=True, text=True)
    if check.returncode == 3:
        pytest.skip(f"podman cannot run containers on this machine: {check.stderr.strip()}")
    assert check.returncode == 0, check.stderr
    env = {**os.environ, "IMAGE_TAG": TAG}
    build = subprocess.run(
        ["bash", str(SCRIPT), "build"], capture_output=True, text=True, env=env, timeout=900
    )
    assert build.returncode == 0, f"{build.stdout}\n{build.stderr}"
    names = dict(
        line.split("=", 1)
        for line in subprocess.run(
            ["bash", str(SCRIPT), "env"], capture_output=True, text=True, env=env, check=True
        ).stdout.splitlines()
    )
    # The user's side (docs/kubernetes.md): their handlers on top of the worker image.
    context = write_mailer_app(tmp_path_factory.mktemp("app-image"))
    (context / "Dockerfile").write_text(
        f"FROM {names['WORKER_IMAGE']}\n"
        "COPY mailer/ /app/mailer/\n"
        'CMD ["worker", "mailer.tasks:engine"]\n'
    )
    podman("build", "--pull=never", "-t", APP_IMAGE, str(context))
    return Images(worker=names["WORKER_IMAGE"], operator=names["OPERATOR_IMAGE"], app=APP_IMAGE)


@pytest.fixture(scope="module")
def secure_redis() -> Iterator[RedisServer]:
    with RedisServer(password=REDIS_PASSWORD) as server:
        yield server


class Container:
    """``podman run`` in the foreground (host network), removed when it stops."""

    def __init__(self, image: str, args: Sequence[str], log_path: Path, *options: str) -> None:
        self.name = f"runnerq-e2e-{uuid.uuid4().hex[:8]}"
        self.log_path = log_path
        command = ["podman", "--runtime", "runc", "run", "--rm", "--name", self.name,
                   "--network", "host", *options, image, *args]  # fmt: skip
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log()}"
            )
        return True

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (podman passes it on to the container), then wait; kill if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                podman("kill", self.name, check=False)
                self.process.wait(timeout=30)
        podman("rm", "-f", "--ignore", self.name, check=False)
        return self.process.returncode


def env_options(env: Mapping[str, str]) -> list[str]:
    return [f"--env={name}={value}" for name, value in env.items()]


def inspect(image: str) -> dict[str, Any]:
    found = json.loads(podman("image", "inspect", image).stdout)
    assert isinstance(found, list)
    return dict(found[0])


def test_images_are_small_non_root_and_start(images: Images) -> None:
    base = inspect("localhost/runnerq-base:bookworm")
    for image, entrypoint in [
        (images.worker, ["runnerq"]),
        (images.operator, ["python", "-m", "runnerq_operator"]),
    ]:
        found = inspect(image)
        assert found["Config"]["User"] == "10001:10001", image
        assert found["Config"]["Entrypoint"] == entrypoint, image
        assert found["Config"]["Labels"]["org.opencontainers.image.version"] == "0.1.0"
        # Small: the application adds at most 60 MB to the Python base.
        assert found["Size"] - base["Size"] < 60_000_000, (image, found["Size"] - base["Size"])
        help_text = podman("run", "--rm", *LOCKED_DOWN, image, "--help").stdout
        assert "usage:" in help_text, help_text
    # Nothing can be installed into the operator image at run time.
    no_pip = podman("run", "--rm", "--entrypoint", "python", images.operator, "-m", "pip",
                    check=False)  # fmt: skip
    assert no_pip.returncode != 0 and "No module named pip" in no_pip.stderr


def test_worker_image_drains_a_password_protected_redis(
    images: Images, secure_redis: RedisServer, tmp_path: Path
) -> None:
    queue = f"img-{uuid.uuid4().hex[:6]}"
    port = free_port()
    enqueue_sends(secure_redis.url, queue, 20)
    worker = Container(
        images.app,
        ["worker", "mailer.tasks:engine", "--redis-url", secure_redis.url, "--queue", queue,
         "--max-workers", "5", "--metrics-port", str(port)],
        tmp_path / "worker.log",
        *LOCKED_DOWN,
    )  # fmt: skip
    try:
        wait_for(
            lambda: worker.running() and stats(secure_redis.url, queue).completed == 20,
            what="20 activities completed by the worker container",
            timeout=90,
        )
        assert http_ok(port, "/healthz") and http_ok(port, "/readyz")
        metrics = http_text(port, "/metrics")
        assert "runnerq" in metrics, metrics[:500]
        # SIGTERM: a graceful stop, exit code 0.
        assert worker.stop() == 0, worker.log()
    finally:
        worker.stop()
        print(f"--- worker container log (tail) ---\n{log_tail(worker.log())}")


def enqueue_sends(redis_url: str, queue: str, count: int) -> None:
    async def run() -> None:
        async with ActivityClient(redis_url, queue) as client:
            await client.enqueue_many(
                [("send_email", {"to": f"user{i}@example.com"}) for i in range(count)]
            )

    asyncio.run(run())


def http_text(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode())


class Forwarder:
    """Relays TCP connections from ``listen`` to ``target`` (a thread per direction)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def in_cluster_api(
    plane: ControlPlane, namespace: str, account: str, directory: Path
) -> Iterator[list[str]]:
    """podman options that give a container what a pod of ``account`` has: the token, CA and
    namespace files in /var/run/secrets/kubernetes.io/serviceaccount, and the API server at
    https://kubernetes.default.svc (kopf's in-cluster login; a loopback alias on port 443
    relayed to the test API server, whose certificate names kubernetes.default.svc)."""
    token = plane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout
    kubeconfig = yaml.safe_load(plane.kubeconfig.read_text())
    ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)  # the container's user is not root
    for name, content in [("token", token.strip().encode()), ("ca.crt", ca),
                          ("namespace", namespace.encode())]:  # fmt: skip
        (directory / name).write_bytes(content)
        (directory / name).chmod(0o644)
    alias = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(1, 250)}"
    host, port = plane.server.removeprefix("https://").rsplit(":", 1)
    forwarder = Forwarder((alias, 443), (host, int(port)))
    try:
        yield [
            f"--volume={directory}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            f"--add-host=kubernetes.default.svc:{alias}",
        ]
    finally:
        forwarder.close()


def test_operator_image_reconciles_and_the_worker_image_drains(
    images: Images,
    control_plane: ControlPlane,
    namespace: str,
    secure_redis: RedisServer,
    tmp_path: Path,
) -> None:
    plane = control_plane
    release = f"img-{namespace.removeprefix('e2e-')}"
    repository, tag = images.operator.rsplit(":", 1)
    adopt_crd(plane, release, namespace)
    plane.helm(
        "install", release, str(CHART_DIR), "--namespace", namespace,
        "--set", f"operator.image.repository={repository}", "--set", f"operator.image.tag={tag}",
        "--set", f"operator.watchNamespaces={{{namespace}}}", "--wait", "--timeout", "120s",
    )  # fmt: skip
    containers: list[Container] = []
    try:
        name = f"{release}-runnerq-operator"
        wait_available(plane, namespace, name)
        deployment = get_object(plane, "deployment", name, namespace)
        pod = deployment["spec"]["template"]["spec"]
        spec = first_container(deployment)
        assert spec["image"] == images.operator
        health, metrics = free_port(), free_port()
        env = {e["name"]: e["value"] for e in spec["env"]}
        env |= {"RUNNERQ_OPERATOR_METRICS_PORT": str(metrics)}
        args = replace_flag(spec["args"], "--liveness", f"http://0.0.0.0:{health}/healthz")
        with in_cluster_api(plane, namespace, pod["serviceAccountName"], tmp_path / "sa") as api:
            operator = Container(
                images.operator, args, tmp_path / "operator.log",
                *LOCKED_DOWN, "--tmpfs=/tmp", *api, *env_options(env),
            )  # fmt: skip
            containers.append(operator)
            wait_for(lambda: operator.running() and http_ok(health, "/healthz"),
                     what="the operator container's liveness", timeout=90)  # fmt: skip

            secret = load_example("redis-secret.yaml")
            secret["stringData"]["url"] = secure_redis.url
            plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(secret))
            queue = load_example("activityqueue.yaml")
            queue["spec"]["worker"]["image"] = images.app
            queue["spec"]["scaling"]["pollIntervalSeconds"] = 1
            plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(queue))

            def ready() -> bool:
                found = condition(plane, namespace, "emails", "Ready")
                return operator.running() and bool(found and found["status"] == "True")

            wait_for(ready, what="the example queue Ready=True (operator image)")
            assert "runnerq_operator_reconciles_total" in http_text(metrics, "/metrics")

            # The producer Job's container, in the app image: enqueues one activity.
            producer = first_container(load_example("producer-job.yaml"))
            producer_env = container_env(plane, namespace, producer)
            command = container_command(producer, producer_env)
            enqueuer = Container(
                images.app, command[1:], tmp_path / "producer.log",
                *LOCKED_DOWN, f"--entrypoint={command[0]}", *env_options(producer_env),
            )  # fmt: skip
            assert enqueuer.wait(timeout=60) == 0, enqueuer.log()
            activity_id = enqueuer.log().strip().splitlines()[-1]

            # The worker Deployment the operator made: one of its pods, in the app image.
            wait_for(lambda: replicas(plane, namespace, "emails") == 1, what="1 worker replica")
            workers = get_object(plane, "deployment", "emails-worker", namespace)
            worker_spec = first_container(workers)
            assert worker_spec["image"] == images.app
            worker_env = container_env(plane, namespace, worker_spec)
            command = replace_flag(
                container_command(worker_spec, worker_env), "--metrics-port", str(free_port())
            )
            worker = Container(
                images.app, command[1:], tmp_path / "worker.log",
                *LOCKED_DOWN, f"--entrypoint={command[0]}", *env_options(worker_env),
            )  # fmt: skip
            containers.append(worker)
            result = activity_result(secure_redis.url, "emails", activity_id, timeout=60)
            assert result == {"delivered_to": "ada@example.com", "attempt": 1}
            assert worker.stop() == 0, worker.log()
            assert operator.stop() == 0, operator.log()
        assert_no_rbac_denial(operator.log())
    finally:
        for container in containers:
            container.stop()
            print(f"--- {container.log_path.name} (tail) ---\n{log_tail(container.log())}")
        plane.helm("uninstall", release, "--namespace", namespace, check=False)
