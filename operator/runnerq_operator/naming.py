"""Names the operator gives things: the API group, labels, owned objects, field managers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "API_VERSION",
    "FIELD_MANAGER",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "WORKER_CONTAINER",
    "WORKER_LABELS",
    "configmap_name",
    "deployment_name",
    "owner_reference",
    "selector_labels",
    "selector_string",
    "standard_labels",
]

GROUP = "runnerq.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ActivityQueue"
PLURAL = "activityqueues"

#: The one field manager of everything the operator writes (server-side apply).
FIELD_MANAGER = "runnerq-operator"
WORKER_CONTAINER = "worker"

_NAME = "app.kubernetes.io/name"
_INSTANCE = "app.kubernetes.io/instance"
_WORKER = "runnerq-worker"

#: Labels every worker Deployment of this operator carries (the Deployment watch's filter).
WORKER_LABELS = {_NAME: _WORKER, "app.kubernetes.io/managed-by": FIELD_MANAGER}


def deployment_name(name: str) -> str:
    return f"{name}-worker"


def configmap_name(name: str) -> str:
    return f"{name}-queue"


def selector_labels(name: str) -> dict[str, str]:
    """The worker pods' selector: immutable once the Deployment exists, so keep it minimal."""
    return {_NAME: _WORKER, _INSTANCE: name}


def selector_string(name: str) -> str:
    """The selector as a label-selector string (the scale subresource's status.selector)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def standard_labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "runnerq",
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
    }


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """An owner reference to the ActivityQueue: its owned objects go when it goes."""
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
