"""manifests/: rendered from the chart (a test fails when the committed files are stale), and
installed with `kubectl apply -f manifests/` the way users do; then the examples of
manifests/examples/ (Secret, ActivityQueue, producer Job) work end to end: the producer's
container enqueues, the operator scales the workers, a worker run as the Deployment's pod
drains the queue, with the Redis URL and password from the Secret."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.redis_server import RedisServer, free_port

from .bundle_harness import (
    EXAMPLES_DIR,
    MANIFESTS_DIR,
    REDIS_PASSWORD,
    DeploymentOperator,
    PodProcess,
    activity_result,
    container_command,
    container_env,
    documents,
    first_container,
    get_object,
    load_example,
    replace_flag,
    wait_available,
    write_mailer_app,
)
from .cluster import ControlPlane
from .operator_harness import (
    REPO_ROOT,
    condition,
    install_crd,
    log_tail,
    replicas,
    service_account_kubeconfig,
    stats,
)
from .waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SYSTEM_NAMESPACE = "runnerq-system"
OPERATOR = "runnerq-operator"


@pytest.fixture(scope="module")
def secure_redis() -> Iterator[RedisServer]:
    with RedisServer(password=REDIS_PASSWORD) as server:
        yield server


def test_manifests_are_rendered_from_the_chart(control_plane: ControlPlane) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / "render_manifests.py"), "--check"],
        env={**os.environ, "HELM": str(control_plane.bin_dir / "helm")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_manifests_hold_the_whole_bundle() -> None:
    objects = [
        obj for path in sorted(MANIFESTS_DIR.glob("*.yaml")) for obj in documents(path.read_text())
    ]
    assert [o["kind"] for o in objects] == [
        "CustomResourceDefinition", "Namespace", "ServiceAccount", "ClusterRole",
        "ClusterRoleBinding", "Service", "Deployment",
    ]  # fmt: skip
    namespaced = [o for o in objects if o["kind"] in ("ServiceAccount", "Service", "Deployment")]
    assert {o["metadata"]["namespace"] for o in namespaced} == {SYSTEM_NAMESPACE}


def test_examples_are_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    install_crd(control_plane)
    control_plane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted"
    )
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLES_DIR)
    )
    examples = sorted(EXAMPLES_DIR.glob("*.yaml"))
    assert len(examples) == 3
    assert result.stdout.count("(server dry run)") == len(examples), result.stdout
    assert "violate PodSecurity" not in result.stderr, result.stderr


@pytest.mark.slow
def test_kubectl_apply_then_the_examples_end_to_end(
    control_plane: ControlPlane, namespace: str, secure_redis: RedisServer, tmp_path: Path
) -> None:
    plane = control_plane
    applied = plane.kubectl("apply", "-f", str(MANIFESTS_DIR))
    assert f"namespace/{SYSTEM_NAMESPACE}" in applied.stdout, applied.stdout
    operators: list[DeploymentOperator] = []
    processes: list[PodProcess] = []
    try:
        wait_available(plane, SYSTEM_NAMESPACE, OPERATOR)  # restricted Pod Security enforced
        deployment = get_object(plane, "deployment", OPERATOR, SYSTEM_NAMESPACE)
        kubeconfig = service_account_kubeconfig(
            plane, SYSTEM_NAMESPACE, OPERATOR, tmp_path / "sa.kubeconfig"
        )
        operators.append(DeploymentOperator(deployment, kubeconfig, tmp_path / "op.log").start())

        # The examples, as they are, but for the Redis URL (the test's redis-server).
        secret = load_example("redis-secret.yaml")
        secret["stringData"]["url"] = secure_redis.url
        plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(secret))
        plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES_DIR / "activityqueue.yaml"))

        def ready() -> bool:
            found = condition(plane, namespace, "emails", "Ready")
            return bool(found and found["status"] == "True")

        wait_for(ready, what="the example queue Ready=True")
        app = write_mailer_app(tmp_path / "app")

        # The producer Job's container enqueues one activity.
        job = load_example("producer-job.yaml")
        producer = first_container(job)
        env = container_env(plane, namespace, producer)
        assert env["RUNNERQ_QUEUE"] == "emails"  # from the operator's ConfigMap
        assert env["RUNNERQ_REDIS_URL"] == secure_redis.url  # from the Secret
        enqueue = PodProcess(container_command(producer, env), env, app, tmp_path / "producer.log")
        assert enqueue.wait(timeout=60) == 0, enqueue.log()
        activity_id = enqueue.log().strip().splitlines()[-1]

        # The operator scales the workers up; one of them, run as its pod would be, drains it.
        wait_for(lambda: replicas(plane, namespace, "emails") == 1, what="1 worker replica")
        workers = get_object(plane, "deployment", "emails-worker", namespace)
        container = first_container(workers)
        env = container_env(plane, namespace, container)
        command = replace_flag(
            container_command(container, env), "--metrics-port", str(free_port())
        )
        processes.append(PodProcess(command, env, app, tmp_path / "worker.log"))
        result = activity_result(secure_redis.url, "emails", activity_id)
        assert result == {"delivered_to": "ada@example.com", "attempt": 1}
        assert stats(secure_redis.url, "emails").completed == 1
        operators[-1].stop()

        # kubectl delete -f manifests/runnerq.yaml removes the operator (the CRD stays).
        plane.kubectl("delete", "-f", str(MANIFESTS_DIR / "runnerq.yaml"), "--wait=false")
        assert get_object(plane, "clusterrole", OPERATOR) is None
        assert get_object(plane, "clusterrolebinding", OPERATOR) is None
        wait_for(
            lambda: get_object(plane, "namespace", SYSTEM_NAMESPACE) is None,
            what=f"namespace {SYSTEM_NAMESPACE} deleted",
            timeout=90,
        )
        assert get_object(plane, "activityqueue", "emails", namespace) is not None
    finally:
        for process in processes:
            process.stop()
        for operator in operators:
            operator.stop()
            print(f"--- operator log (tail) ---\n{log_tail(operator.log())}")
        plane.kubectl(
            "delete", "-f", str(MANIFESTS_DIR / "runnerq.yaml"), "--ignore-not-found",
            "--wait=false", check=False,
        )  # fmt: skip
    operators[0].assert_never_forbidden()
