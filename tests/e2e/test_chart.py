"""The Helm chart (charts/runnerq) against the real control plane: lint, server-side dry run,
and install -> reconcile -> scale -> upgrade -> uninstall, with the operator running under the
chart's own ServiceAccount and RBAC, and Redis reached with a password from a Secret."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from runnerq_operator.settings import auto_priority

from tests.support.redis_server import RedisServer, free_port

from .bundle_harness import (
    CHART_DIR,
    CRD_NAME,
    REDIS_PASSWORD,
    DeploymentOperator,
    PodProcess,
    adopt_crd,
    container_command,
    container_env,
    find,
    first_container,
    get_object,
    helm_template,
    load_example,
    replace_flag,
    wait_available,
)
from .cluster import ControlPlane
from .operator_harness import (
    NOOP_APP,
    PEERING_RBAC_FILE,
    RBAC_FILE,
    activity_queue,
    condition,
    enqueue,
    install_crd,
    log_tail,
    queue_config,
    replicas,
    service_account_kubeconfig,
    stats,
)
from .waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OPERATOR_IMAGE = "localhost/runnerq/operator"


@pytest.fixture(scope="module")
def secure_redis() -> Iterator[RedisServer]:
    """A redis-server that requires a password."""
    with RedisServer(password=REDIS_PASSWORD) as server:
        yield server


def plain_url(server: RedisServer) -> str:
    return f"redis://127.0.0.1:{server.port}"


def restricted(plane: ControlPlane, namespace: str) -> None:
    """Enforce the restricted Pod Security Standard in the namespace (and warn on workloads)."""
    plane.kubectl(
        "label", "--overwrite", "namespace", namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip


def rules(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(rule) for rule in role["rules"]]


def can(plane: ControlPlane, user: str, namespace: str, verb: str, resource: str) -> bool:
    result = plane.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False
    )
    return result.stdout.strip() == "yes"


def test_lint_strict(control_plane: ControlPlane) -> None:
    variants = [
        [],
        ["--set", "operator.watchNamespaces={team-a,team-b}"],
        ["--set", "metrics.serviceMonitor.enabled=true", "--set", "crds.install=false"],
        ["--set", "operator.peering.enabled=true", "--set", "operator.replicas=3"],
        [
            "--set", "operator.peering.enabled=true", "--set", "operator.peering.priority=7",
            "--set", "operator.watchNamespaces={team-a}",
        ],
    ]  # fmt: skip
    for values in variants:
        result = control_plane.helm("lint", "--strict", str(CHART_DIR), *values, check=False)
        assert result.returncode == 0, (values, result.stdout, result.stderr)
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "operator.image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "replicaCount=2"], "additional properties 'replicaCount' not allowed"),
        (["--set", "operator.watchNamespaces={Not_A_Namespace}"], "watchNamespaces"),
        (["--set", "operator.healthPort=0"], "healthPort"),
        (
            [
                "--set",
                "metrics.service.enabled=false",
                "--set",
                "metrics.serviceMonitor.enabled=true",
            ],
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
        (
            ["--set", "exampleQueue.enabled=true"],
            "exampleQueue.enabled needs the ActivityQueue CRD in the cluster",
        ),
        (["--set", "operator.replicas=2"], "operator.replicas > 1 needs operator.peering.enabled"),
        (
            ["--set", "operator.replicas=2", "--set", "operator.peering.enabled=true",
             "--set", "operator.peering.priority=5"],
            "operator.replicas > 1 needs operator.peering.priority auto",
        ),
        (["--set", "operator.peering.priority=high"], "/operator/peering/priority"),
        # Nested Kubernetes shapes, not only the top level (the API server would refuse some
        # later, and silently drop others).
        (["--set", "operator.resources.foo=1"], "additional properties 'foo' not allowed"),
        (["--set", "operator.resources.limits.memory=lots"], "/operator/resources/limits/memory"),
        (["--set", "operator.securityContext.capabilities.drop=ALL"],
         "/operator/securityContext/capabilities/drop"),
        (["--set", "operator.podSecurityContext.runAsNonRoot=maybe"],
         "/operator/podSecurityContext/runAsNonRoot"),
        (["--set", "operator.tolerations[0].operator=Equals"], "/operator/tolerations/0/operator"),
        (["--set", "operator.affinity.nodeAfinity.x=1"], "additional properties 'nodeAfinity'"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_a_message(
    control_plane: ControlPlane, values: list[str], message: str
) -> None:
    result = control_plane.helm(
        "template", "rq", str(CHART_DIR), "--kube-version", control_plane.kubernetes_version,
        *values, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_plain_helm_template_renders_and_a_too_old_cluster_is_refused(
    control_plane: ControlPlane,
) -> None:
    """``helm template x charts/runnerq`` with no flags renders (the pinned helm knows its
    Kubernetes version: built without it, it assumed v1.20.0 and refused the chart), and
    Chart.yaml's kubeVersion still refuses an older Kubernetes with a clear message, which
    is what ``helm install`` into such a cluster says (it checks the cluster's version)."""
    plain = control_plane.helm("template", "x", str(CHART_DIR), check=False)
    assert plain.returncode == 0, plain.stderr
    assert "kind: CustomResourceDefinition" in plain.stdout
    old = control_plane.helm(
        "template", "x", str(CHART_DIR), "--kube-version", "v1.26.9", check=False
    )
    assert old.returncode != 0
    assert (
        "chart requires kubeVersion: >=1.27.0-0 which is incompatible with Kubernetes v1.26.9"
        in old.stderr
    ), old.stderr


def test_every_object_is_labelled_and_the_pod_is_locked_down(control_plane: ControlPlane) -> None:
    objects = helm_template(
        control_plane, "rq", "runnerq", "--set", "metrics.serviceMonitor.enabled=true"
    )
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment",
            "Service", "ServiceAccount", "ServiceMonitor",
        ]
    )  # fmt: skip
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "runnerq", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == "rq", obj["kind"]
        assert labels["app.kubernetes.io/version"] == "0.1.0", obj["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", obj["kind"]
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = first_container(deployment)
    assert container["image"] == "runnerq/operator:0.1.0"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"livenessProbe", "readinessProbe", "startupProbe", "resources"} <= set(container)
    # The metrics Service selects the operator's pod, and the ServiceMonitor that Service.
    service = find(objects, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    monitor = find(objects, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_namespaced_rbac_splits_the_reference_rules(control_plane: ControlPlane) -> None:
    reference = yaml.safe_load(RBAC_FILE.read_text())
    cluster_wide = helm_template(control_plane, "rq", "runnerq")
    assert rules(find(cluster_wide, "ClusterRole")) == reference["rules"]
    assert not [o for o in cluster_wide if o["kind"] in ("Role", "RoleBinding")]

    namespaced = helm_template(
        control_plane, "rq", "runnerq", "--set", "operator.watchNamespaces={team-a,team-b}"
    )
    cluster_rules = rules(find(namespaced, "ClusterRole"))
    roles = [o for o in namespaced if o["kind"] == "Role"]
    bindings = [o for o in namespaced if o["kind"] == "RoleBinding"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        # Together, the ClusterRole and each Role grant exactly the reference rules.
        combined = cluster_rules + rules(role)
        assert sorted(map(json.dumps, combined)) == sorted(map(json.dumps, reference["rules"]))
    assert {r for rule in cluster_rules for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    args = first_container(find(namespaced, "Deployment"))["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_peering_renders_replicas_priorities_rbac_and_the_peering_object(
    control_plane: ControlPlane,
) -> None:
    reference = yaml.safe_load(PEERING_RBAC_FILE.read_text())["rules"]
    objects = helm_template(
        control_plane, "rq", "runnerq",
        "--set", "operator.peering.enabled=true", "--set", "operator.replicas=3",
    )  # fmt: skip
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = {
        e["name"]: e.get("value", e.get("valueFrom")) for e in first_container(deployment)["env"]
    }
    assert env["RUNNERQ_OPERATOR_PEERING"] == "rq-runnerq-operator"
    assert env["RUNNERQ_OPERATOR_PRIORITY"] == "auto"  # each pod its own, from POD_ID
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    peering = find(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "rq-runnerq-operator"
    assert peering["metadata"]["labels"]["app.kubernetes.io/instance"] == "rq"
    role = find(objects, "ClusterRole", "rq-runnerq-operator-peering")
    assert sorted(map(json.dumps, rules(role))) == sorted(map(json.dumps, reference))
    binding = find(objects, "ClusterRoleBinding", "rq-runnerq-operator-peering")
    assert binding["subjects"][0]["name"] == find(objects, "ServiceAccount")["metadata"]["name"]
    assert not [o for o in objects if o["kind"] == "KopfPeering"]

    namespaced = helm_template(
        control_plane, "rq", "runnerq",
        "--set", "operator.peering.enabled=true", "--set", "operator.peering.name=shared",
        "--set", "operator.peering.priority=100",
        "--set", "operator.watchNamespaces={team-a,team-b}",
    )  # fmt: skip
    env = {
        e["name"]: e.get("value") for e in first_container(find(namespaced, "Deployment"))["env"]
    }
    assert (env["RUNNERQ_OPERATOR_PEERING"], env["RUNNERQ_OPERATOR_PRIORITY"]) == ("shared", "100")
    assert find(namespaced, "Deployment")["spec"]["replicas"] == 1
    peerings = [o for o in namespaced if o["kind"] == "KopfPeering"]
    assert sorted((p["metadata"]["name"], p["metadata"]["namespace"]) for p in peerings) == [
        ("shared", "team-a"),
        ("shared", "team-b"),
    ]
    assert not [o for o in namespaced if o["kind"] == "ClusterKopfPeering"]
    cluster_rules = rules(find(namespaced, "ClusterRole", "rq-runnerq-operator-peering"))
    roles = [
        o for o in namespaced
        if o["kind"] == "Role" and o["metadata"]["name"] == "rq-runnerq-operator-peering"
    ]  # fmt: skip
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        combined = cluster_rules + rules(role)
        assert sorted(map(json.dumps, combined)) == sorted(map(json.dumps, reference))

    # Without peering: none of it (manifests/ is rendered from these defaults).
    default = helm_template(control_plane, "rq", "runnerq")
    assert not [o for o in default if "kopf" in json.dumps(o)]
    assert "POD_ID" not in json.dumps(find(default, "Deployment"))


def test_template_is_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    install_crd(control_plane)  # the example ActivityQueue needs its kind served
    restricted(control_plane, namespace)
    objects = helm_template(
        control_plane, "dry", namespace,
        "--set", f"operator.watchNamespaces={{{namespace}}}",
        "--set", "exampleQueue.enabled=true",
        "--api-versions", "runnerq.io/v1alpha1/ActivityQueue",
    )  # fmt: skip
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "ActivityQueue", "Role", "Deployment"} <= kinds
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(objects)
    )
    assert result.stdout.count("(server dry run)") == len(objects), result.stdout
    assert "violate PodSecurity" not in result.stderr, result.stderr

    # The dry run really validates the example against the CRD's schema and rules.
    invalid = helm_template(
        control_plane, "dry", namespace,
        "--set", "exampleQueue.enabled=true", "--set", "exampleQueue.spec.worker.app=no-colon",
        "--api-versions", "runnerq.io/v1alpha1/ActivityQueue",
        "--show-only", "templates/examples/activityqueue.yaml",
    )  # fmt: skip
    refused = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(invalid), check=False
    )
    assert refused.returncode != 0
    assert "worker.app must look like package.module:attribute" in refused.stderr


def previous_chart(destination: Path) -> Path:
    """A copy of the chart whose CRD lacks the Redis printer column: an older release."""
    chart = destination / "runnerq"
    shutil.copytree(CHART_DIR, chart)
    crd = chart / "templates" / "crds" / "activityqueues.runnerq.io.yaml"
    lines = crd.read_text().splitlines(keepends=True)
    kept = [line for line in lines if "{name: Redis," not in line]
    assert len(kept) == len(lines) - 1
    crd.write_text("".join(kept))
    return chart


def crd_columns(plane: ControlPlane) -> list[str]:
    crd = get_object(plane, "crd", CRD_NAME)
    return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]


def ready(plane: ControlPlane, namespace: str, name: str) -> bool:
    found = condition(plane, namespace, name, "Ready")
    return bool(found and found["status"] == "True")


@pytest.mark.slow
def test_install_reconcile_upgrade_uninstall(
    control_plane: ControlPlane, namespace: str, secure_redis: RedisServer, tmp_path: Path
) -> None:
    plane = control_plane
    release = f"rq-{namespace.removeprefix('e2e-')}"
    restricted(plane, namespace)
    adopt_crd(plane, release, namespace)
    wait = ["--wait", "--timeout", "120s"]

    # -- install (an "older" chart, to see the upgrade update the CRD) ----------------------
    installed = plane.helm(
        "install", release, str(previous_chart(tmp_path)), "--namespace", namespace,
        "--set", f"operator.image.repository={OPERATOR_IMAGE}", *wait,
    )  # fmt: skip
    assert "Redis" not in crd_columns(plane)
    name = f"{release}-runnerq-operator"
    # NOTES.txt: what to do next, with this release's names.
    assert f"kubectl -n {namespace} rollout status deployment/{name}" in installed.stdout
    assert "kind: ActivityQueue" in installed.stdout
    deployment = get_object(plane, "deployment", name, namespace)
    assert deployment is not None
    wait_available(plane, namespace, name)  # admitted under the restricted Pod Security level
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    user = f"system:serviceaccount:{namespace}:{account}"
    assert can(plane, user, "default", "patch", "deployments.apps")  # cluster-wide by default
    assert not can(plane, user, namespace, "delete", "deployments.apps")
    kubeconfig = service_account_kubeconfig(plane, namespace, account, tmp_path / "sa.kubeconfig")

    operators: list[DeploymentOperator] = []
    workers: list[PodProcess] = []
    try:
        operators.append(
            DeploymentOperator(deployment, kubeconfig, tmp_path / "operator-1.log").start()
        )
        # -- a queue whose Redis password comes from a Secret ------------------------------
        plane.kubectl(
            "create", "secret", "generic", "redis-auth", "-n", namespace,
            f"--from-literal=password={REDIS_PASSWORD}",
        )  # fmt: skip
        queue = f"{namespace}.mail"
        plane.apply(
            activity_queue(
                "mail", namespace, plain_url(secure_redis), queue,
                redis={"passwordSecretRef": {"name": "redis-auth"}},
                worker={"concurrency": 10},
                scaling={"pollIntervalSeconds": 1, "targetPerReplica": 10, "maxReplicas": 5,
                         "scaleDownStabilizationSeconds": 0},
            )
        )  # fmt: skip
        wait_for(lambda: ready(plane, namespace, "mail"), what="mail Ready=True")
        reachable = condition(plane, namespace, "mail", "RedisReachable")
        assert reachable is not None and reachable["status"] == "True", reachable
        assert queue_config(secure_redis.url, queue) == {"paused": "0"}

        # -- depth scales the workers; a worker started as the pod would be drains it ------
        enqueue(secure_redis.url, queue, 30, payload={"sleep": 0.2})
        wait_for(lambda: replicas(plane, namespace, "mail") == 3, what="3 replicas for 30")
        workers_deployment = get_object(plane, "deployment", "mail-worker", namespace)
        container = first_container(workers_deployment)
        env = container_env(plane, namespace, container)
        assert env["RUNNERQ_REDIS_URL"] == secure_redis.url  # the password, from the Secret
        command = replace_flag(
            container_command(container, env), "--metrics-port", str(free_port())
        )
        assert command[:2] == ["runnerq", "worker"] and command[2] == NOOP_APP
        workers.append(PodProcess(command, env, Path.cwd(), tmp_path / "worker.log"))
        wait_for(
            lambda: stats(secure_redis.url, queue).completed == 30,
            what=f"30 activities completed by the pod's worker (log: {workers[0].log_path})",
        )
        wait_for(lambda: replicas(plane, namespace, "mail") == 0, what="back to 0 replicas")

        # -- upgrade: the current chart, one namespace, and the example queue -------------
        operators[-1].stop()  # Recreate: the old operator stops before the new one starts
        plane.kubectl(
            "create", "secret", "generic", "redis", "-n", namespace,
            f"--from-literal=url={secure_redis.url}",
        )  # fmt: skip
        example = load_example("activityqueue.yaml")["spec"]
        example["worker"]["app"] = NOOP_APP
        example["scaling"]["pollIntervalSeconds"] = 1
        plane.helm(
            "upgrade", release, str(CHART_DIR), "--namespace", namespace, "--reuse-values",
            "--set", f"operator.watchNamespaces={{{namespace}}}",
            "--set", "exampleQueue.enabled=true",
            "--set-json", f"exampleQueue.spec={json.dumps(example)}",
            *wait,
        )  # fmt: skip
        assert "Redis" in crd_columns(plane)  # the upgrade updated the CRD
        upgraded = get_object(plane, "deployment", name, namespace)
        assert f"--namespace={namespace}" in first_container(upgraded)["args"]
        assert first_container(upgraded)["image"] == f"{OPERATOR_IMAGE}:0.1.0"  # reused
        assert get_object(plane, "role", name, namespace) is not None
        assert can(plane, user, namespace, "patch", "deployments.apps")
        assert not can(plane, user, "default", "patch", "deployments.apps")
        assert can(plane, user, namespace, "list", "namespaces")
        operators.append(
            DeploymentOperator(upgraded, kubeconfig, tmp_path / "operator-2.log").start()
        )
        wait_for(lambda: ready(plane, namespace, "emails"), what="example queue Ready=True")
        configmap = get_object(plane, "configmap", "emails-queue", namespace)
        assert configmap["data"]["RUNNERQ_QUEUE"] == "emails"
        plane.kubectl(
            "patch", "aq", "mail", "-n", namespace, "--type=merge",
            "-p", '{"spec":{"queueConfig":{"maxRetries":7}}}',
        )  # fmt: skip
        wait_for(
            lambda: queue_config(secure_redis.url, queue).get("max_retries") == "7",
            what="max_retries 7 written by the namespaced operator",
        )
        operators[-1].stop()

        # -- uninstall: the release's objects go, the CRD and users' queues stay ----------
        plane.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
        for kind, obj_name, obj_namespace in [
            ("deployment", name, namespace),
            ("serviceaccount", account, namespace),
            ("service", f"{name}-metrics", namespace),
            ("role", name, namespace),
            ("rolebinding", name, namespace),
            ("clusterrole", name, None),
            ("clusterrolebinding", name, None),
            ("activityqueue", "emails", namespace),  # the example queue was the release's
        ]:
            assert get_object(plane, kind, obj_name, obj_namespace) is None, (kind, obj_name)
        assert get_object(plane, "crd", CRD_NAME) is not None  # helm.sh/resource-policy: keep
        assert get_object(plane, "activityqueue", "mail", namespace) is not None
        plane.kubectl("delete", "activityqueue", "mail", "-n", namespace)
        assert plane.helm("list", "--namespace", namespace, "-q").stdout.strip() == ""
    finally:
        for worker in workers:
            worker.stop()
        for operator in operators:
            operator.stop()
            print(f"--- {operator.log_path.name} (tail) ---\n{log_tail(operator.log())}")
    for operator in operators:
        operator.assert_never_forbidden()


@pytest.mark.slow
def test_peering_install_in_one_step_and_one_replica_works(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """``helm install`` with peering and two replicas: kopf's CRDs (the chart's crds/) are in
    place before the peering object is created, in the same install; the two pods (run here
    with the Deployment's own environment) get priorities of their own, and the lower one
    stands by."""
    plane = control_plane
    release = f"pq-{namespace.removeprefix('e2e-')}"
    install_crd(plane)  # crds.install=false: the other release of these tests owns it
    plane.helm(
        "install", release, str(CHART_DIR), "--namespace", namespace,
        "--set", "crds.install=false", "--set", f"operator.image.repository={OPERATOR_IMAGE}",
        "--set", "operator.peering.enabled=true", "--set", "operator.replicas=2",
        "--set", f"operator.watchNamespaces={{{namespace}}}",
    )  # fmt: skip
    name = f"{release}-runnerq-operator"
    assert get_object(plane, "kopfpeering", name, namespace) is not None
    deployment = get_object(plane, "deployment", name, namespace)
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = service_account_kubeconfig(plane, namespace, account, tmp_path / "sa.kubeconfig")
    low, high = sorted((f"{name}-6b7f9-a1", f"{name}-6b7f9-b2"), key=auto_priority)
    assert auto_priority(low) != auto_priority(high)
    operators = [
        DeploymentOperator(deployment, kubeconfig, tmp_path / f"{pod}.log", pod_name=pod)
        for pod in (low, high)
    ]
    try:
        for operator in operators:
            operator.start()
        standby, active = operators
        wait_for(
            lambda: "Pausing operations in favour of" in standby.log(),
            what="the pod of the lower priority stands by",
            timeout=30,
        )
        status = get_object(plane, "kopfpeering", name, namespace)["status"]
        assert {pod: status[pod]["priority"] for pod in (low, high)} == {
            low: auto_priority(low),
            high: auto_priority(high),
        }  # kopf's identities are the pods' names (POD_ID)
        assert "Pausing operations" not in active.log()
        for operator in operators:
            health = operator.health() or {}
            assert health["autoscaler"]["peering"] == {"name": name, "ok": True}, health
    finally:
        for operator in operators:
            operator.stop()
            print(f"--- {operator.log_path.name} (tail) ---\n{log_tail(operator.log())}")
        plane.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
    assert get_object(plane, "kopfpeering", name, namespace) is None
    for operator in operators:
        operator.assert_never_forbidden()
