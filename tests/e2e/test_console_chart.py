"""The chart's console (console.enabled) on the real control plane.

- ``helm template``: the console's objects, locked down like the operator's, with read-only
  RBAC (create events only with auditEvents; no token and no RBAC without cluster.status),
  and bad values refused with a message; ``helm lint --strict`` of the variants.
- ``helm install`` with the console, its Ingress and NetworkPolicy: the objects are created
  (the pod admitted under the restricted Pod Security level); its ServiceAccount can read
  ActivityQueues and create Events, and cannot read Secrets nor change ActivityQueues
  (``kubectl auth can-i --as``); and the console, run here with the Deployment's arguments
  and environment and the ServiceAccount's token where a pod has it, shows the replicas and
  conditions the operator wrote on the queue's ActivityQueue, and records an action as an
  Event on it.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerq.console.auth import hash_token
from tests.support.redis_server import free_port

from .bundle_harness import (
    CHART_DIR,
    PodProcess,
    container_command,
    container_env,
    find,
    first_container,
    get_object,
    helm_template,
    http_ok,
    replace_flag,
    wait_available,
)
from .cluster import ControlPlane
from .operator_harness import (
    OperatorProcess,
    activity_queue,
    enqueue,
    events,
    log_tail,
)
from .waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ADMIN_TOKEN = "e2e-console-admin-token-0123456789"
#: The least values the console renders with.
CONSOLE = [
    "--set", "console.enabled=true",
    "--set", "console.redis.url=redis://redis:6379/0",
    "--set", "console.tokens.existingSecret=console-tokens",
]  # fmt: skip

# Run the console as its pod would, with the service account directory moved to where this
# test wrote the token and CA bundle (the kubelet's path is not writable here).
IN_POD = (
    "import sys, runnerq.console.kube as kube; kube.SERVICE_ACCOUNT_DIR = sys.argv.pop(1);"
    " from runnerq.cli import main; sys.exit(main(sys.argv[1:]))"
)


def can(plane: ControlPlane, user: str, namespace: str, verb: str, resource: str) -> bool:
    result = plane.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False
    )
    return result.stdout.strip() == "yes"


def rules(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return list(find(objects, kind, "rq-runnerq-console")["rules"])


# -- helm template -------------------------------------------------------------------------


def test_console_renders_locked_down_with_read_only_rbac(control_plane: ControlPlane) -> None:
    plane = control_plane
    assert not [
        o for o in helm_template(plane, "rq", "runnerq") if "console" in o["metadata"]["name"]
    ]  # off by default: manifests/ has no console
    objects = helm_template(
        plane, "rq", "runnerq", *CONSOLE,
        "--set", "console.redis.passwordSecretRef.name=redis-auth",
        "--set", "console.trustedProxies={10.0.0.0/8}", "--set", "console.groupRoles.ops=admin",
        "--set", "console.queues={emails,orders.eu}", "--set", "console.readOnly=true",
        "--set", "console.ingress.enabled=true", "--set", "console.networkPolicy.enabled=true",
    )  # fmt: skip
    deployment = find(objects, "Deployment", "rq-runnerq-console")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is True
    container = first_container(deployment)
    assert container["image"] == "runnerq/worker:0.1.0"  # the worker image has the console
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["command"] == ["runnerq"]
    assert container["args"] == [
        "console", "--host=0.0.0.0", "--port=8080",
        "--tokens-file=/etc/runnerq-console/tokens/tokens",
        "--trusted-proxy=10.0.0.0/8", "--group-role=ops=admin", "--proxy-default-role=viewer",
        "--read-only", "--live-interval=1s", "--log-level=WARNING",
        "--queue=emails", "--queue=orders.eu", "--kube-events",
    ]  # fmt: skip
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    # "$$": Kubernetes leaves it alone, runnerq puts the password in, URL-quoted.
    assert env["RUNNERQ_REDIS_URL_TEMPLATE"] == "redis://:$$(RUNNERQ_REDIS_PASSWORD)@redis:6379/0"
    assert env["RUNNERQ_REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "redis-auth", "key": "password"}
    }
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"name": "tokens", "mountPath": "/etc/runnerq-console/tokens", "readOnly": True} in (
        container["volumeMounts"]
    )
    service = find(objects, "Service", "rq-runnerq-console")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    operator_pods = find(objects, "Deployment", "rq-runnerq-operator")["spec"]["selector"]
    assert not operator_pods["matchLabels"].items() <= pod_labels.items()
    ingress = find(objects, "Ingress", "rq-runnerq-console")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "rq-runnerq-console", "port": {"name": "http"}}}
    policy = find(objects, "NetworkPolicy", "rq-runnerq-console")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    egress_ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
    assert egress_ports == [53, 53, 443, 6379, 6443]

    read = {"apiGroups": ["runnerq.io"], "resources": ["activityqueues"],
            "verbs": ["get", "list", "watch"]}  # fmt: skip
    event = {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}
    assert rules(objects, "ClusterRole") == [read, event]
    quiet = helm_template(
        plane, "rq", "runnerq", *CONSOLE, "--set", "console.cluster.auditEvents=false"
    )
    assert rules(quiet, "ClusterRole") == [read]
    quiet_args = first_container(find(quiet, "Deployment", "rq-runnerq-console"))["args"]
    assert "--kube-events" not in quiet_args

    namespaced = helm_template(
        plane, "rq", "runnerq", *CONSOLE, "--set", "console.cluster.namespaces={team-a,team-b}"
    )
    console_roles = [o for o in namespaced if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in console_roles) == ["team-a", "team-b"]
    assert all(r["rules"] == [read, event] for r in console_roles)
    assert not [
        o for o in namespaced
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "rq-runnerq-console"
    ]  # fmt: skip
    args = first_container(find(namespaced, "Deployment", "rq-runnerq-console"))["args"]
    assert "--kube-namespace=team-a" in args and "--kube-namespace=team-b" in args

    offline = helm_template(
        plane, "rq", "runnerq", *CONSOLE, "--set", "console.cluster.status=false"
    )
    offline_pod = find(offline, "Deployment", "rq-runnerq-console")["spec"]["template"]["spec"]
    assert offline_pod["automountServiceAccountToken"] is False
    assert "--no-kube" in offline_pod["containers"][0]["args"]
    assert not [o for o in offline if "Role" in o["kind"] and "console" in o["metadata"]["name"]]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "console.enabled=true", "--set", "console.redis.url=redis://r:6379"],
         "console.enabled needs a way to know who calls"),
        (["--set", "console.enabled=true", "--set", "console.tokens.existingSecret=t"],
         "needs exactly one of console.redis.url and console.redis.urlSecretRef.name"),
        ([*CONSOLE, "--set", "console.redis.urlSecretRef.name=s"],
         "needs exactly one of console.redis.url and console.redis.urlSecretRef.name"),
        (["--set", "console.redis.url=redis://:pw@r:6379"], "/console/redis/url"),
        (["--set", "console.proxyDefaultRole=boss"], "/console/proxyDefaultRole"),
        (["--set", "console.groupRoles.ops=root"], "/console/groupRoles/ops"),
        (["--set", "console.cluster.namespaces={Team_A}"], "/console/cluster/namespaces/0"),
        (["--set", "console.trustedProxies={proxy.example}"], "/console/trustedProxies/0"),
        (["--set", "console.liveInterval=soon"], "/console/liveInterval"),
        (["--set", "console.port=70000"], "/console/port"),
        (["--set", "console.service.type=External"], "/console/service/type"),
        (["--set", "console.ingress.hosts[0].paths[0].pathType=Any"],
         "/console/ingress/hosts/0/paths/0/pathType"),
        (["--set", "console.networkPolicy.from[0].podSelecter.app=x"],
         "additional properties 'podSelecter' not allowed"),
        (["--set", "console.securityContext.privileged=maybe"],
         "/console/securityContext/privileged"),
        (["--set", "console.replicaCount=2"], "additional properties 'replicaCount' not allowed"),
    ],
)  # fmt: skip
def test_bad_console_values_are_refused_with_a_message(
    control_plane: ControlPlane, values: list[str], message: str
) -> None:
    result = control_plane.helm(
        "template", "rq", str(CHART_DIR), "--kube-version", control_plane.kubernetes_version,
        *values, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_console_variants_lint_strict(control_plane: ControlPlane) -> None:
    for values in (
        CONSOLE,
        [*CONSOLE, "--set", "console.ingress.enabled=true",
         "--set", "console.networkPolicy.enabled=true", "--set", "console.cluster.namespaces={a}"],
        [*CONSOLE, "--set", "console.cluster.status=false", "--set", "console.replicas=3"],
    ):  # fmt: skip
        result = control_plane.helm("lint", "--strict", str(CHART_DIR), *values, check=False)
        assert result.returncode == 0, (values, result.stdout, result.stderr)


# -- helm install, RBAC, and the console with the ServiceAccount's token ---------------------


def api(port: int, path: str, body: Any = None, csrf: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if csrf is not None:
        headers |= {"X-CSRF-Token": csrf, "Cookie": f"runnerq_csrf={csrf}"}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers=headers,
        method="POST" if data else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def pod_service_account(plane: ControlPlane, namespace: str, account: str, directory: Path) -> Path:
    """The files a pod of ``account`` has in /var/run/secrets/kubernetes.io/serviceaccount."""
    directory.mkdir()
    token = plane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout
    (directory / "token").write_text(token.strip())
    cluster = yaml.safe_load(plane.kubeconfig.read_text())["clusters"][0]["cluster"]
    (directory / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    (directory / "namespace").write_text(namespace)
    return directory


def cluster_of(console: PodProcess, port: int, queue: str) -> dict[str, Any] | None:
    """The queue's ``cluster`` field in ``GET /api/queues``."""
    serving(console, port)
    found = [q for q in api(port, "/api/queues")["queues"] if q["queue"] == queue]
    return found[0]["cluster"] if found else None


def serving(console: PodProcess, port: int) -> bool:
    if console.process.poll() is not None:
        raise AssertionError(f"the console exited:\n{console.log()}")
    return http_ok(port, "/healthz")


def scaled_to(console: PodProcess, port: int, queue: str, replicas: int) -> Any:
    found = cluster_of(console, port, queue)
    return found if found is not None and found["replicas"] == replicas else None


def test_install_rbac_and_the_console_in_the_cluster(
    control_plane: ControlPlane,
    crd: str,
    namespace: str,
    operator: OperatorProcess,
    redis_url: str,
    tmp_path: Path,
) -> None:
    plane = control_plane
    release = f"cq-{namespace.removeprefix('e2e-')}"
    plane.kubectl(
        "label", "--overwrite", "namespace", namespace,
        "pod-security.kubernetes.io/enforce=restricted",
    )  # fmt: skip
    tokens = f"# console tokens\n{hash_token(ADMIN_TOKEN)} admin e2e admin\n"
    plane.kubectl("create", "secret", "generic", "console-redis", "-n", namespace,
                  f"--from-literal=url={redis_url}")  # fmt: skip
    plane.kubectl("create", "secret", "generic", "console-tokens", "-n", namespace,
                  f"--from-literal=tokens={tokens}")  # fmt: skip
    peers = [{"podSelector": {"matchLabels": {"app": "oauth2-proxy"}}}]
    installed = plane.helm(
        "install", release, str(CHART_DIR), "--namespace", namespace,
        "--set", "crds.install=false", "--set", f"operator.watchNamespaces={{{namespace}}}",
        "--set", "console.enabled=true",
        "--set", "console.image.repository=localhost/runnerq/worker",
        "--set", "console.redis.urlSecretRef.name=console-redis",
        "--set", "console.tokens.existingSecret=console-tokens",
        "--set", "console.ingress.enabled=true", "--set", "console.networkPolicy.enabled=true",
        "--set-json", f"console.networkPolicy.from={json.dumps(peers)}",
    )  # fmt: skip
    name = f"{release}-runnerq-console"
    # NOTES.txt says how to reach it.
    assert f"port-forward svc/{name} 8080:80" in installed.stdout, installed.stdout
    try:
        for kind in ("service", "ingress", "networkpolicy", "serviceaccount"):
            assert get_object(plane, kind, name, namespace) is not None, kind
        assert get_object(plane, "clusterrole", name) is not None
        deployment = get_object(plane, "deployment", name, namespace)
        wait_available(plane, namespace, name)  # admitted under the restricted level

        # -- read-only RBAC, by impersonation --------------------------------------------
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        user = f"system:serviceaccount:{namespace}:{account}"
        granted = [("get", "activityqueues.runnerq.io"), ("list", "activityqueues.runnerq.io"),
                   ("watch", "activityqueues.runnerq.io"), ("create", "events")]  # fmt: skip
        refused = [("get", "secrets"), ("list", "secrets"), ("watch", "secrets"),
                   ("patch", "activityqueues.runnerq.io"), ("update", "activityqueues.runnerq.io"),
                   ("patch", "activityqueues.runnerq.io/status"),
                   ("delete", "activityqueues.runnerq.io"), ("create", "activityqueues.runnerq.io"),
                   ("get", "configmaps"), ("list", "pods"), ("patch", "deployments.apps"),
                   ("list", "events")]  # fmt: skip
        for where in (namespace, "default"):
            assert [g for g in granted if not can(plane, user, where, *g)] == [], where
            assert [r for r in refused if can(plane, user, where, *r)] == [], where

        # -- a queue the operator scales ---------------------------------------------------
        queue = f"{namespace}.mail"
        plane.apply(
            activity_queue(
                "mail", namespace, redis_url, queue,
                scaling={"pollIntervalSeconds": 1, "targetPerReplica": 10, "maxReplicas": 5},
            )
        )  # fmt: skip
        enqueue(redis_url, queue, 30)

        # -- the console, as its pod runs it -----------------------------------------------
        container = first_container(deployment)
        env = container_env(plane, namespace, container)
        assert env["RUNNERQ_REDIS_URL"] == redis_url
        server = plane.server.removeprefix("https://")
        env |= {"KUBERNETES_SERVICE_HOST": server.rsplit(":", 1)[0],
                "KUBERNETES_SERVICE_PORT": server.rsplit(":", 1)[1]}  # fmt: skip
        (tmp_path / "tokens").write_text(tokens)
        port = free_port()
        command = container_command(container, env)
        command = replace_flag(command, "--host", "127.0.0.1")
        command = replace_flag(command, "--port", str(port))
        command = replace_flag(command, "--tokens-file", str(tmp_path / "tokens"))
        assert command[:2] == ["runnerq", "console"] and "--kube-events" in command
        accounts = pod_service_account(plane, namespace, account, tmp_path / "serviceaccount")
        console = PodProcess(
            [Path(sys.executable).name, "-c", IN_POD, str(accounts), *command[1:]],
            env, tmp_path, tmp_path / "console.log",
        )  # fmt: skip
        try:
            wait_for(lambda: serving(console, port), what=f"console ({console.log_path})")
            view = wait_for(
                lambda: scaled_to(console, port, queue, 3),
                what="the console shows the 3 replicas the operator set",
                timeout=60,
            )
            assert (view["namespace"], view["name"], view["ready"]) == (namespace, "mail", "True")
            assert view["desired"] == 3
            assert view["last_scale"] is not None and view["last_scale"]["time"]
            types = {c["type"]: c["status"] for c in view["conditions"]}
            assert types["Ready"] == types["RedisReachable"] == types["Scaling"] == "True"
            assert api(port, f"/api/queues/{queue}")["cluster"]["name"] == "mail"

            # -- an action becomes an Event on the ActivityQueue ---------------------------
            csrf = api(port, "/api/session")["csrf"]
            assert api(port, f"/api/queues/{queue}/pause", {}, csrf=csrf)["paused"] is True
            event = wait_for(
                lambda: next(
                    (e for e in events(plane, namespace, "mail") if e["reason"] == "ConsolePause"),
                    None,
                ),
                what="the ConsolePause Event on the ActivityQueue",
            )
            assert event["involvedObject"]["kind"] == "ActivityQueue"
            assert event["message"].startswith("e2e admin (admin, via token) paused the queue")
            assert event["reportingComponent"] == "runnerq-console"
        finally:
            console.stop()
            print(f"--- console log (tail) ---\n{log_tail(console.log())}")
        assert "Forbidden" not in console.log() and "cannot list" not in console.log()
    finally:
        plane.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
    assert get_object(plane, "clusterrole", name) is None
