"""The Deployment and ConfigMap an ActivityQueue owns."""

from __future__ import annotations

from typing import Any

from runnerq_operator.manifests import build_configmap, build_deployment, merge_template
from runnerq_operator.naming import WORKER_LABELS
from runnerq_operator.redis_target import operator_target
from runnerq_operator.spec import parse_spec

from runnerq import redis_url_from_env

BODY: dict[str, Any] = {
    "apiVersion": "runnerq.io/v1alpha1",
    "kind": "ActivityQueue",
    "metadata": {"name": "emails", "namespace": "apps", "uid": "uid-1"},
}


def spec(**extra: Any) -> Any:
    raw: dict[str, Any] = {
        "redis": {"url": "redis://redis.apps:6379/0"},
        "worker": {"image": "reg/app:1", "app": "myapp.tasks:engine", "concurrency": 8},
    }
    raw.update(extra)
    return parse_spec(raw, "emails")


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_deployment_runs_the_worker_for_the_queue() -> None:
    d = build_deployment(BODY, spec(), replicas=3)

    assert d["metadata"]["name"] == "emails-worker"
    assert d["metadata"]["namespace"] == "apps"
    assert d["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "runnerq.io/v1alpha1",
            "kind": "ActivityQueue",
            "name": "emails",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert d["spec"]["replicas"] == 3
    selector = d["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "runnerq-worker",
        "app.kubernetes.io/instance": "emails",
    }
    template = d["spec"]["template"]
    assert selector.items() <= template["metadata"]["labels"].items()
    container = template["spec"]["containers"][0]
    assert container["command"] == ["runnerq"]
    assert container["args"] == [
        "worker", "myapp.tasks:engine", "--queue", "emails",
        "--max-workers", "8", "--metrics-port", "9090",
    ]  # fmt: skip
    assert env_of(d) == {"RUNNERQ_REDIS_URL": "redis://redis.apps:6379/0"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    assert template["spec"]["terminationGracePeriodSeconds"] == 60


def test_password_from_secret_is_expanded_by_kubernetes() -> None:
    d = build_deployment(
        BODY, spec(redis={"url": "redis://r:6379/0", "passwordSecretRef": {"name": "auth"}}), 1
    )
    container = d["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in container["env"]]
    # $(VAR) expands only variables defined earlier in the list.
    assert names.index("RUNNERQ_REDIS_PASSWORD") < names.index("RUNNERQ_REDIS_URL")
    env = env_of(d)
    assert env["RUNNERQ_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "auth", "key": "password"}}
    assert env["RUNNERQ_REDIS_URL"] == "redis://:$(RUNNERQ_REDIS_PASSWORD)@r:6379/0"


def test_url_from_secret() -> None:
    d = build_deployment(BODY, spec(redis={"urlSecretRef": {"name": "redis", "key": "u"}}), 1)
    assert env_of(d) == {"RUNNERQ_REDIS_URL": {"secretKeyRef": {"name": "redis", "key": "u"}}}


def test_tls_with_ca_mounts_it_and_names_it_in_the_url() -> None:
    redis = {"url": "redis://r:6380", "tls": {"enabled": True, "caSecretRef": {"name": "ca"}}}
    d = build_deployment(BODY, spec(redis=redis), 1)
    pod = d["spec"]["template"]["spec"]
    assert env_of(d)["RUNNERQ_REDIS_URL"] == (
        "rediss://r:6380?ssl_ca_certs=/etc/runnerq/redis-tls/ca.crt"
    )
    assert pod["volumes"][0]["secret"]["secretName"] == "ca"
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/etc/runnerq/redis-tls"


def test_user_settings_reach_the_pod() -> None:
    worker = {
        "image": "reg/app:1",
        "app": "myapp.tasks:engine",
        "env": [{"name": "LOG_LEVEL", "value": "debug"}],
        "resources": {"requests": {"cpu": "100m"}},
        "serviceAccountName": "mailer",
        "nodeSelector": {"pool": "workers"},
        "tolerations": [{"key": "spot", "operator": "Exists"}],
        "podLabels": {"team": "mail"},
        "podAnnotations": {"a": "b"},
        "imagePullPolicy": "Always",
    }
    d = build_deployment(BODY, spec(worker=worker), 2)
    template = d["spec"]["template"]
    pod = template["spec"]
    assert env_of(d)["LOG_LEVEL"] == "debug"
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "100m"}}
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["serviceAccountName"] == "mailer"
    assert pod["nodeSelector"] == {"pool": "workers"}
    assert pod["tolerations"] == [{"key": "spot", "operator": "Exists"}]
    assert template["metadata"]["labels"]["team"] == "mail"
    assert template["metadata"]["annotations"]["a"] == "b"


def test_pod_template_override_merges_but_keeps_selector_labels() -> None:
    worker = {
        "image": "reg/app:1",
        "app": "myapp.tasks:engine",
        "podTemplate": {
            "metadata": {"labels": {"app.kubernetes.io/instance": "hijack", "extra": "1"}},
            "spec": {
                "priorityClassName": "high",
                "containers": [
                    {
                        "name": "worker",
                        "env": [{"name": "RUNNERQ_REDIS_URL", "value": "redis://o"}],
                    },
                    {"name": "sidecar", "image": "proxy:1"},
                ],
            },
        },
    }
    d = build_deployment(BODY, spec(worker=worker), 1)
    template = d["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "emails"
    assert template["metadata"]["labels"]["extra"] == "1"
    assert template["spec"]["priorityClassName"] == "high"
    containers = template["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker", "sidecar"]
    assert containers[0]["image"] == "reg/app:1"  # merged, not replaced
    assert env_of(d)["RUNNERQ_REDIS_URL"] == "redis://o"


def test_merge_template_replaces_plain_lists() -> None:
    merged = merge_template({"a": [1, 2], "m": {"x": 1}}, {"a": [3], "m": {"y": 2}})
    assert merged == {"a": [3], "m": {"x": 1, "y": 2}}


def test_configmap_for_producers() -> None:
    cm = build_configmap(BODY, spec())
    assert cm["metadata"]["name"] == "emails-queue"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert cm["data"] == {
        "RUNNERQ_QUEUE": "emails",
        "RUNNERQ_REDIS_URL": "redis://redis.apps:6379/0",
    }


def test_configmap_never_holds_secrets() -> None:
    cm = build_configmap(BODY, spec(redis={"urlSecretRef": {"name": "redis"}}))
    assert cm["data"] == {"RUNNERQ_QUEUE": "emails", "RUNNERQ_REDIS_URL_SECRET": "redis/url"}
    cm = build_configmap(
        BODY, spec(redis={"url": "redis://r:6379", "passwordSecretRef": {"name": "auth"}})
    )
    assert "RUNNERQ_REDIS_URL" not in cm["data"]
    assert cm["data"]["RUNNERQ_REDIS_PASSWORD_SECRET"] == "auth/password"


def test_producer_resolves_the_configmap_template_to_the_operators_url() -> None:
    # What a producer pod sees: the ConfigMap through envFrom (no $(VAR) expansion there)
    # plus RUNNERQ_REDIS_PASSWORD from the Secret; runnerq.redis_url_from_env() must give
    # the URL the operator itself connects with, for any password.
    s = spec(redis={"url": "redis://app@r:6379/2", "passwordSecretRef": {"name": "auth"}})
    data = build_configmap(BODY, s)["data"]
    password = "p@ss/w:rd %$(x)"
    env = {**data, "RUNNERQ_REDIS_PASSWORD": password}
    assert redis_url_from_env(env) == operator_target(s.redis, password=password).url


def test_the_deployment_watch_sees_every_worker_deployment() -> None:
    """kopf watches Deployments with WORKER_LABELS (to restore replicas set by someone else);
    the Deployments the operator builds carry them, and the queue's name to find it by."""
    labels = build_deployment(BODY, spec(), replicas=1)["metadata"]["labels"]
    assert WORKER_LABELS.items() <= labels.items()
    assert labels["app.kubernetes.io/instance"] == "emails"
