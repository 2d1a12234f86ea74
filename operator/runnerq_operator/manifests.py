"""The objects an ActivityQueue owns, built as plain dicts for server-side apply. Pure.

- the worker Deployment: ``runnerq worker <app>`` with the queue, the concurrency and the
  metrics port as flags, the Redis URL in ``RUNNERQ_REDIS_URL`` (from a Secret when the spec
  says so), probes on the worker's ``/healthz`` and ``/readyz``, a named ``metrics`` port,
  and a restricted security context;
- a ConfigMap that other pods can load with ``envFrom`` to enqueue into this queue.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from runnerq.env import PASSWORD_SECRET_ENV, URL_SECRET_ENV, URL_TEMPLATE_ENV

from .naming import (
    WORKER_CONTAINER,
    configmap_name,
    deployment_name,
    owner_reference,
    selector_labels,
    standard_labels,
)
from .redis_target import CA_MOUNT_PATH, PASSWORD_ENV, URL_ENV, worker_url
from .spec import QueueSpec, RedisSpec

__all__ = ["build_configmap", "build_deployment", "merge_template"]

_CA_VOLUME = "redis-tls"


def _metadata(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": standard_labels(meta["name"]),
        "ownerReferences": [owner_reference(body)],
    }


def _redis_env(redis: RedisSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    if redis.password_secret is not None:
        ref = redis.password_secret
        env.append(
            {
                "name": PASSWORD_ENV,
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    url = worker_url(redis)
    if url is not None:
        env.append({"name": URL_ENV, "value": url})
    elif redis.url_secret is not None:
        ref = redis.url_secret
        env.append(
            {"name": URL_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
    return env


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def build_deployment(body: Mapping[str, Any], spec: QueueSpec, replicas: int) -> dict[str, Any]:
    """The worker Deployment with ``replicas`` pods (the operator's only writer of it)."""
    name = body["metadata"]["name"]
    worker = spec.worker
    env = _redis_env(spec.redis)
    user_env = [dict(e) for e in worker.env]
    user_names = {e["name"] for e in user_env}
    env = [e for e in env if e["name"] not in user_names] + user_env
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": worker.image,
        "command": ["runnerq"],
        "args": [
            "worker",
            worker.app,
            "--queue",
            spec.queue,
            "--max-workers",
            str(worker.concurrency),
            "--metrics-port",
            str(worker.metrics_port),
        ],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": worker.metrics_port, "protocol": "TCP"}],
        "livenessProbe": _probe("/healthz", 10, 3),
        "readinessProbe": _probe("/readyz", 5, 2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if worker.env_from:
        container["envFrom"] = [dict(e) for e in worker.env_from]
    if worker.image_pull_policy:
        container["imagePullPolicy"] = worker.image_pull_policy
    if worker.resources:
        container["resources"] = copy.deepcopy(dict(worker.resources))
    pod: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": worker.termination_grace_seconds,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if spec.redis.tls and spec.redis.ca_secret is not None:
        ca = spec.redis.ca_secret
        pod["volumes"] = [
            {
                "name": _CA_VOLUME,
                "secret": {"secretName": ca.name, "items": [{"key": ca.key, "path": ca.key}]},
            }
        ]
        container["volumeMounts"] = [
            {"name": _CA_VOLUME, "mountPath": CA_MOUNT_PATH, "readOnly": True}
        ]
    if worker.service_account:
        pod["serviceAccountName"] = worker.service_account
    if worker.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in worker.image_pull_secrets]
    if worker.node_selector:
        pod["nodeSelector"] = dict(worker.node_selector)
    if worker.tolerations:
        pod["tolerations"] = [copy.deepcopy(dict(t)) for t in worker.tolerations]
    if worker.affinity:
        pod["affinity"] = copy.deepcopy(dict(worker.affinity))
    template: dict[str, Any] = {
        "metadata": {
            "labels": {**worker.pod_labels, **standard_labels(name)},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(worker.metrics_port),
                "prometheus.io/path": "/metrics",
                **worker.pod_annotations,
            },
        },
        "spec": pod,
    }
    if worker.pod_template:
        template = merge_template(template, worker.pod_template)
        # The selector's labels are not the user's to change: the Deployment would lose its pods.
        template["metadata"]["labels"].update(selector_labels(name))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(body, deployment_name(name)),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(name)},
            # Pods that go finish their activities (or hand them back) within the grace period.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": template,
        },
    }


def _merge_named(base: list[Any], override: list[Any]) -> list[Any]:
    merged = [copy.deepcopy(item) for item in base]
    index = {item.get("name"): i for i, item in enumerate(merged) if isinstance(item, dict)}
    for item in override:
        name = item.get("name") if isinstance(item, Mapping) else None
        if name is not None and name in index:
            merged[index[name]] = merge_template(merged[index[name]], item)
        else:
            merged.append(copy.deepcopy(item))
    return merged


_NAMED_LISTS = {"containers", "initContainers", "volumes", "env", "volumeMounts", "ports"}


def merge_template(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged over ``base``: maps merge key by key, lists of named things
    (containers, volumes, env, ...) merge by ``name``, anything else is replaced."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_template(old, value)
        elif key in _NAMED_LISTS and isinstance(old, list) and isinstance(value, list):
            merged[key] = _merge_named(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_configmap(body: Mapping[str, Any], spec: QueueSpec) -> dict[str, Any]:
    """What a producer needs to enqueue: the queue's name and, when it holds no secret,
    the Redis URL (``envFrom: [{configMapRef: {name: <name>-queue}}]``)."""
    name = body["metadata"]["name"]
    data = {"RUNNERQ_QUEUE": spec.queue}
    redis = spec.redis
    if redis.url is not None and redis.password_secret is None:
        data[URL_ENV] = worker_url(redis) or redis.url
    elif redis.url_secret is not None:
        data[URL_SECRET_ENV] = f"{redis.url_secret.name}/{redis.url_secret.key}"
    if redis.password_secret is not None:
        ref = redis.password_secret
        data[PASSWORD_SECRET_ENV] = f"{ref.name}/{ref.key}"
        # Not expanded through envFrom: runnerq.redis_url_from_env() fills the password in.
        data[URL_TEMPLATE_ENV] = worker_url(redis) or ""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(body, configmap_name(name)),
        "data": data,
    }
