"""The console's in-cluster parts without a cluster: an ActivityQueue's status as the
overview's ``cluster`` field (against what the operator's own status code writes), the index
by queue, the list cache (time to live, one read for many callers, failures as null), the
Event of an audited action, kubeconfig documents and the settings (no I/O)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest
from runnerq_operator.conditions import Condition, merge_conditions
from runnerq_operator.scaling import Depth
from runnerq_operator.status import queue_status

from runnerq.console import ConsoleSettings
from runnerq.console.audit import AuditEntry
from runnerq.console.cluster import (
    MAX_CONDITIONS,
    ClusterStatus,
    QueueRef,
    cluster_view,
    index_queues,
    queue_of,
)
from runnerq.console.kube import KubeConfig, KubeError, kubeconfig_from
from runnerq.console.kube_audit import audit_event, audit_message
from runnerq.errors import ConfigurationError

CONDITION_KEYS = {"type", "status", "reason", "message", "lastTransitionTime"}
VIEW_KEYS = {"namespace", "name", "replicas", "desired", "ready", "last_scale", "conditions"}


def activity_queue(
    name: str = "mail",
    namespace: str = "team-a",
    queue: str | None = None,
    status: dict[str, Any] | None = None,
    uid: str = "u-1",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"redis": {"url": "redis://r:6379"}}
    if queue is not None:
        spec["queue"] = queue
    found: dict[str, Any] = {
        "apiVersion": "runnerq.io/v1alpha1",
        "kind": "ActivityQueue",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": spec,
    }
    if status is not None:
        found["status"] = status
    return found


def operator_status(**changes: Any) -> dict[str, Any]:
    """A status as the operator writes it (its own functions, not a copy of its shape)."""
    conditions = merge_conditions(
        None,
        [
            Condition("Ready", "True", "Reconciled", "worker Deployment and queue config applied"),
            Condition("RedisReachable", "True", "Connected", "depth read"),
            Condition("Scaling", "True", "Polling", "3 replicas match the queue's depth"),
        ],
        generation=2,
        now="2026-01-02T03:04:05Z",
    )
    args: dict[str, Any] = {
        "name": "mail",
        "queue": "team-a.mail",
        "generation": 2,
        "conditions": conditions,
        "replicas": 3,
        "desired": 4,
        "depth": Depth(ready=30, in_flight=2, scheduled=0),
        "last_scale_time": "2026-01-02T03:04:06Z",
    }
    args.update(changes)
    return queue_status(**args)


def test_status_written_by_the_operator_maps_to_the_cluster_field() -> None:
    view = cluster_view(activity_queue(status=operator_status()))
    assert set(view) == VIEW_KEYS
    assert view["namespace"] == "team-a" and view["name"] == "mail"
    assert (view["replicas"], view["desired"], view["ready"]) == (3, 4, "True")
    assert view["last_scale"] == {
        "time": "2026-01-02T03:04:06Z",
        "message": "3 replicas match the queue's depth",
    }
    assert [c["type"] for c in view["conditions"]] == ["Ready", "RedisReachable", "Scaling"]
    for condition in view["conditions"]:
        assert set(condition) == CONDITION_KEYS
    assert view["conditions"][0] == {
        "type": "Ready",
        "status": "True",
        "reason": "Reconciled",
        "message": "worker Deployment and queue config applied",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
    }


def test_a_new_activity_queue_has_nulls_and_ready_unknown() -> None:
    """Before the operator wrote a status: no replicas, no scale, Ready Unknown."""
    view = cluster_view(activity_queue())
    assert view == {
        "namespace": "team-a",
        "name": "mail",
        "replicas": None,
        "desired": None,
        "ready": "Unknown",
        "last_scale": None,
        "conditions": [],
    }
    never_scaled = cluster_view(activity_queue(status=operator_status(last_scale_time=None)))
    assert never_scaled["last_scale"] is None
    assert never_scaled["replicas"] == 3


def test_odd_status_values_are_shown_safely() -> None:
    """A status edited by hand (or by another tool) never breaks the overview's shape."""
    status = {
        "replicas": "3",
        "desiredReplicas": True,
        "lastScaleTime": 5,
        "conditions": [
            {"type": "Ready", "status": "Maybe", "reason": None, "message": "x" * 5000},
            "not a condition",
            *({"type": f"T{i}", "status": "True"} for i in range(40)),
        ],
    }
    view = cluster_view(activity_queue(status=status))
    assert (view["replicas"], view["desired"], view["last_scale"]) == (None, None, None)
    assert view["ready"] == "Unknown"
    assert len(view["conditions"]) == MAX_CONDITIONS
    first = view["conditions"][0]
    assert first["status"] == "Unknown" and first["reason"] == ""
    assert len(first["message"]) == 1000 and first["lastTransitionTime"] == ""
    assert cluster_view({"metadata": "bad", "status": []})["namespace"] == ""


def test_the_queue_is_spec_queue_or_the_name() -> None:
    assert queue_of(activity_queue(queue="orders.eu")) == "orders.eu"
    assert queue_of(activity_queue(name="emails")) == "emails"
    assert queue_of({"metadata": {}}) is None


def test_index_by_queue_first_by_namespace_and_name_wins() -> None:
    index = index_queues(
        [
            activity_queue("b", "team-b", queue="shared", uid="u-b"),
            activity_queue("a", "team-b", queue="shared", uid="u-a"),
            activity_queue("emails", "team-a", uid="u-e"),
            {"metadata": {}},  # no name: skipped
        ]
    )
    assert set(index.views) == {"shared", "emails"}
    assert index.views["shared"]["name"] == "a"
    assert index.refs["shared"] == QueueRef("team-b", "a", "u-a")
    assert index.shared == ("shared",)


class Lister:
    """A fetch function that counts its calls, answers ``items`` (or raises ``error``),
    and holds every call until ``release`` is set."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.error: BaseException | None = None
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> list[dict[str, Any]]:
        self.calls += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.items


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_list_is_kept_for_its_ttl_then_read_again() -> None:
    lister, clock = Lister([activity_queue()]), Clock()
    status = ClusterStatus(lister, ttl=5.0, clock=clock)
    assert (await status.view("mail") or {})["name"] == "mail"
    clock.now += 4.9
    assert await status.view("mail") is not None
    assert await status.view("other") is None
    assert lister.calls == 1
    clock.now += 0.2
    lister.items = []
    assert await status.view("mail") is None  # gone from the cluster
    assert lister.calls == 2


async def test_many_callers_share_one_read() -> None:
    lister = Lister([activity_queue()])
    lister.release.clear()
    status = ClusterStatus(lister, clock=Clock())
    callers = [asyncio.ensure_future(status.index()) for _ in range(50)]
    await asyncio.sleep(0)
    lister.release.set()
    found = await asyncio.gather(*callers)
    assert lister.calls == 1
    assert all(f is found[0] for f in found)


async def test_a_caller_that_goes_away_does_not_cancel_the_read() -> None:
    lister = Lister([activity_queue()])
    lister.release.clear()
    status = ClusterStatus(lister, clock=Clock())
    first = asyncio.ensure_future(status.index())
    second = asyncio.ensure_future(status.index())
    await asyncio.sleep(0)
    first.cancel()
    lister.release.set()
    index = await second
    assert index is not None and "mail" in index.views
    assert lister.calls == 1


@pytest.mark.parametrize(
    "error",
    [
        KubeError(403, "Forbidden", 'cannot list resource "activityqueues"'),
        TimeoutError(),
        ConnectionRefusedError(111, "refused"),
        RuntimeError("a bug"),
    ],
)
async def test_a_failed_read_is_null_logged_and_not_retried_before_the_ttl(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    lister, clock = Lister([activity_queue()]), Clock()
    lister.error = error
    status = ClusterStatus(lister, ttl=5.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="runnerq.console.cluster"):
        assert await status.index() is None
        assert await status.view("mail") is None
    assert lister.calls == 1  # a failing API server is not asked by every request
    assert "cannot list ActivityQueues" in caplog.text
    clock.now += 5.0
    lister.error = None
    assert await status.view("mail") is not None


async def test_too_many_and_shared_queues_are_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lister, clock = (
        Lister([activity_queue("a", queue="q"), activity_queue("b", queue="q")]),
        Clock(),
    )
    status = ClusterStatus(lister, ttl=1.0, most=2, clock=clock)
    with caplog.at_level(logging.WARNING, logger="runnerq.console.cluster"):
        await status.index()
        clock.now += 2
        await status.index()
    assert caplog.text.count("several ActivityQueues name the queue(s) q") == 1
    assert caplog.text.count("only the first 2 ActivityQueues") == 2


def entry(action: str = "purge", **changes: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "who": "alice",
        "role": "admin",
        "via": "token",
        "action": action,
        "queue": "team-a.mail",
        "target": "dead letters",
        "count": 12,
        "ms": 1,
    }
    fields.update(changes)
    return AuditEntry(**fields)


def test_an_action_becomes_a_core_v1_event_on_its_activity_queue() -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    event = audit_event(entry(), QueueRef("team-a", "mail", "u-1"), "console-7d9-x", now)
    assert event["metadata"] == {"generateName": "mail.", "namespace": "team-a"}
    assert event["involvedObject"] == {
        "apiVersion": "runnerq.io/v1alpha1",
        "kind": "ActivityQueue",
        "namespace": "team-a",
        "name": "mail",
        "uid": "u-1",
    }
    assert (event["type"], event["reason"], event["action"]) == ("Normal", "ConsolePurge", "purge")
    assert event["message"] == (
        "alice (admin, via token) purged the dead letters on queue team-a.mail through the"
        " console; target: dead letters; activities: 12"
    )
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-01-02T03:04:05Z"
    assert event["reportingInstance"] == "console-7d9-x"
    requeue_all = audit_event(entry("requeue_all"), QueueRef("n", "q", ""), "x", now)
    assert requeue_all["reason"] == "ConsoleRequeueAll"
    assert "uid" not in requeue_all["involvedObject"]


def test_event_messages_are_bounded() -> None:
    message = audit_message(entry("enqueue", who="w" * 2000, target="", count=1))
    assert len(message) == 1024
    assert "target" not in audit_message(entry("pause", target="", count=0))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig(user: dict[str, Any], **cluster: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443/", **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }


def test_kubeconfig_with_a_token_and_ca_data() -> None:
    doc = kubeconfig({"token": "t0ken"}, **{"certificate-authority-data": b64("PEM")})
    config = kubeconfig_from(doc, Path("/etc/kube"))
    assert config.server == "https://127.0.0.1:6443"
    assert (config.token, config.ca_pem, config.insecure) == ("t0ken", "PEM", False)
    assert "t0ken" not in repr(config)  # settings may be logged: no secret in their repr


def test_kubeconfig_paths_are_relative_to_its_folder() -> None:
    doc = kubeconfig({"tokenFile": "token"}, **{"insecure-skip-tls-verify": True})
    config = kubeconfig_from(doc, Path("/etc/kube"))
    assert config.token_file == "/etc/kube/token" and config.insecure


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (kubeconfig({"exec": {"command": "aws"}}), "exec or auth-provider"),
        ({**kubeconfig({}), "current-context": "nope"}, "no context named 'nope'"),
        ({**kubeconfig({}), "current-context": ""}, "no current-context"),
        (kubeconfig({"token": "t"}, server="ftp://x"), "has no server URL"),
        (kubeconfig({"client-key-data": "%%%"}), "client-key-data is not base64"),
        (["not", "a", "mapping"], "is not a kubeconfig"),
    ],
)
def test_bad_kubeconfigs_are_refused_clearly(doc: Any, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        kubeconfig_from(doc, Path("/"))


def test_cluster_settings_need_a_cluster_and_namespace_names() -> None:
    with pytest.raises(ConfigurationError, match="need a cluster"):
        ConsoleSettings(tokens_file="tokens", kube_events=True)
    with pytest.raises(ConfigurationError, match="need a cluster"):
        ConsoleSettings(tokens_file="tokens", kube_namespaces=("team-a",))
    kube = KubeConfig(server="https://127.0.0.1:6443", token="t")
    with pytest.raises(ConfigurationError, match="not a namespace name"):
        ConsoleSettings(tokens_file="tokens", kube=kube, kube_namespaces=("Team_A",))
    ok = ConsoleSettings(
        tokens_file="tokens", kube=kube, kube_namespaces=("team-a",), kube_events=True
    )
    assert ok.kube is kube
