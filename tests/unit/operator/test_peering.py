"""kopf peering: the settings, which queues the operator serves, take and release, and that
the autoscaler writes nothing for a queue it does not serve (no I/O: fakes that refuse use)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
import pytest
from runnerq_operator.actions import QueueWriter
from runnerq_operator.autoscaler import Autoscaler
from runnerq_operator.kube import ApiError, KubeApi
from runnerq_operator.metrics import OperatorMetrics
from runnerq_operator.peering import (
    PeeringCheck,
    PeeringObject,
    PeeringReport,
    configure_peering,
    expected_peerings,
    missing_peering_message,
)
from runnerq_operator.reconciler import Logger, Reconciler
from runnerq_operator.redis_queues import RedisPools
from runnerq_operator.redis_target import RedisTarget
from runnerq_operator.registry import QueueRegistry, QueueState
from runnerq_operator.scaling import Depth, Stabilizer
from runnerq_operator.settings import OperatorConfig, SettingsError
from runnerq_operator.spec import parse_spec

KEY = ("ns", "emails")


def body(generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "runnerq.io/v1alpha1",
        "kind": "ActivityQueue",
        "metadata": {"name": "emails", "namespace": "ns", "uid": "u1", "generation": generation},
        "spec": {
            "redis": {"url": "redis://r:6379"},
            "worker": {"image": "img", "app": "app.tasks:engine"},
        },
    }


def register(registry: QueueRegistry) -> QueueState:
    b = body()
    return registry.upsert(b, parse_spec(b["spec"], "emails"), RedisTarget(url="redis://r:6379"))


class Refuses:
    """Stands for a collaborator that must not be used: any attribute fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"used {name!r}")


# -- settings -----------------------------------------------------------------------------


def test_priority_setting() -> None:
    assert OperatorConfig.from_env({}).priority is None
    assert OperatorConfig.from_env({"RUNNERQ_OPERATOR_PRIORITY": " -5 "}).priority == -5
    with pytest.raises(SettingsError, match="RUNNERQ_OPERATOR_PRIORITY must be an integer"):
        OperatorConfig.from_env({"RUNNERQ_OPERATOR_PRIORITY": "high"})


def test_without_a_peering_name_the_operator_runs_standalone() -> None:
    settings = kopf.OperatorSettings()
    assert configure_peering(settings, OperatorConfig()) is False
    assert settings.peering.standalone is True


def test_a_peering_name_makes_peering_mandatory() -> None:
    settings = kopf.OperatorSettings()
    config = OperatorConfig(peering="runnerq", priority=100)
    assert configure_peering(settings, config) is True
    peering = settings.peering
    assert (peering.name, peering.standalone, peering.mandatory) == ("runnerq", False, True)
    assert peering.priority == 100


def test_kopf_run_peering_and_priority_are_kept() -> None:
    settings = kopf.OperatorSettings()
    settings.peering.name, settings.peering.mandatory = "cli", True  # kopf run --peering cli
    settings.peering.priority = 7  # kopf run --priority 7
    assert configure_peering(settings, OperatorConfig()) is True
    assert (settings.peering.name, settings.peering.priority) == ("cli", 7)


# -- which queues are served --------------------------------------------------------------


def test_standalone_serves_every_registered_queue() -> None:
    registry = QueueRegistry()
    state = register(registry)
    assert registry.serves(KEY)
    assert registry.served() == [state]


def test_peered_serves_between_take_and_release() -> None:
    registry = QueueRegistry(gated=True)
    state = register(registry)
    assert registry.served() == []
    registry.take(KEY, fresh=True)
    assert registry.served() == [state]
    registry.changed.clear()
    assert registry.release(KEY) is state
    assert registry.changed.is_set()  # the autoscaler recomputes what is due
    assert not registry.serves(KEY) and registry.served() == []
    assert registry.stale(KEY)  # its spec may change while a peer serves it


def test_take_before_the_queue_is_registered() -> None:
    """kopf may start the daemon before the resume handler has registered the queue."""
    registry = QueueRegistry(gated=True)
    registry.take(KEY, fresh=True)
    state = register(registry)
    assert registry.served() == [state]


def test_stale_until_taken_fresh_and_forgotten_with_the_queue() -> None:
    registry = QueueRegistry(gated=True)
    state = register(registry)
    registry.take(KEY, fresh=True)
    state.next_poll = 100.0
    registry.release(KEY)
    registry.take(KEY, fresh=False)
    assert registry.stale(KEY) and registry.serves(KEY)
    assert state.next_poll == 0.0  # polled at once when served again
    registry.take(KEY, fresh=True)
    assert not registry.stale(KEY)
    registry.release(KEY)
    registry.remove(KEY)
    assert not registry.stale(KEY)
    assert registry.release(KEY) is None and not registry.stale(KEY)  # unknown: not stale


# -- take and release ---------------------------------------------------------------------


class FakeReconciler(Reconciler):
    """The real take/release around a reconcile that records and fails on demand."""

    def __init__(self, registry: QueueRegistry, error: Exception | None = None) -> None:
        super().__init__(
            registry,
            cast(QueueWriter, Refuses()),
            cast(KubeApi, Refuses()),
            cast(RedisPools, Refuses()),
            OperatorMetrics(),
        )
        self.error = error
        self.reconciled: list[int] = []

    async def reconcile(self, body: Mapping[str, Any], logger: Logger) -> None:
        self.reconciled.append(int(body["metadata"]["generation"]))
        if self.error is not None:
            raise self.error


LOGGER = cast(Logger, Refuses())


async def test_a_queue_taken_again_is_reconciled_first_with_the_current_body() -> None:
    registry = QueueRegistry(gated=True)
    register(registry)
    reconciler = FakeReconciler(registry)
    await reconciler.take(body(), LOGGER)
    assert reconciler.reconciled == []  # the first take: the kopf handlers reconcile
    await reconciler.release(body())
    await reconciler.take(body(generation=2), LOGGER)
    assert reconciler.reconciled == [2]
    assert registry.serves(KEY) and not registry.stale(KEY)


async def test_a_temporary_failure_serves_what_is_registered_and_raises() -> None:
    registry = QueueRegistry(gated=True)
    register(registry)
    registry.release(KEY)
    reconciler = FakeReconciler(registry, kopf.TemporaryError("Redis down", delay=5))
    with pytest.raises(kopf.TemporaryError):
        await reconciler.take(body(), LOGGER)
    assert registry.serves(KEY) and registry.stale(KEY)  # the next try reconciles again


async def test_a_permanent_failure_is_reported_by_reconcile_and_not_raised() -> None:
    """A daemon that fails for good is never started again by kopf: it must not."""
    registry = QueueRegistry(gated=True)
    register(registry)
    registry.release(KEY)
    warnings: list[str] = []

    class Log:
        def warning(self, message: str, *args: Any) -> None:
            warnings.append(message % args)

    reconciler = FakeReconciler(registry, kopf.PermanentError("invalid spec: x"))
    await reconciler.take(body(), cast(Logger, Log()))
    assert registry.serves(KEY) and not registry.stale(KEY)
    assert warnings == ["queue not served until its spec changes: invalid spec: x"]


async def test_release_waits_for_a_write_in_flight_and_drops_the_history() -> None:
    registry = QueueRegistry(gated=True)
    state = register(registry)
    state.stabilizer = Stabilizer(0.0, 3)
    reconciler = FakeReconciler(registry)
    await reconciler.take(body(), LOGGER)
    async with state.lock:  # the autoscaler writing
        release = asyncio.create_task(reconciler.release(body()))
        await asyncio.sleep(0.01)
        assert not registry.serves(KEY)  # no new write starts
        assert not release.done()  # but this one ends first
    await release
    assert state.stabilizer is None


# -- the autoscaler -----------------------------------------------------------------------


def autoscaler(registry: QueueRegistry) -> Autoscaler:
    return Autoscaler(
        registry,
        cast(QueueWriter, Refuses()),
        cast(RedisPools, Refuses()),
        OperatorMetrics(),
        OperatorConfig(),
    )


async def test_the_autoscaler_writes_nothing_for_a_queue_it_does_not_serve() -> None:
    registry = QueueRegistry(gated=True)
    state = register(registry)
    scaler = autoscaler(registry)
    await scaler._scale(state, Depth(ready=500))
    await scaler._unreachable(state, "connection refused")
    assert state.depth is None and state.failures == 0


async def test_the_autoscaler_loop_polls_no_queue_while_none_is_served() -> None:
    registry = QueueRegistry(gated=True)
    register(registry)
    scaler = autoscaler(registry)  # polling would use the refusing Redis pools
    loop = asyncio.create_task(scaler.run())
    for _ in range(5):  # its first round, then it waits for a change of the registry
        await asyncio.sleep(0)
    assert not loop.done()
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert scaler.metrics.registry.get_sample_value("runnerq_operator_queues") == 0


# -- the peering object: missing objects are warned about, and shown in /healthz ------------


def test_the_peering_objects_kopf_needs() -> None:
    assert expected_peerings("rq", clusterwide=True, namespaces=["a"]) == [PeeringObject("rq")]
    assert expected_peerings("rq", clusterwide=False, namespaces=["a", "b", "a"]) == [
        PeeringObject("rq", "a"),
        PeeringObject("rq", "b"),
    ]
    # Namespaces not known by name (`kopf run -n`, patterns): one anywhere must do.
    assert expected_peerings("rq", clusterwide=False, namespaces=None) == [
        PeeringObject("rq", anywhere=True)
    ]
    assert expected_peerings("rq", clusterwide=False, namespaces=["a", "team-*"]) == [
        PeeringObject("rq", "a"),
        PeeringObject("rq", anywhere=True),
    ]


def test_where_each_peering_object_is_looked_for() -> None:
    cluster, ns, anywhere = (
        PeeringObject("rq"),
        PeeringObject("rq", "apps"),
        PeeringObject("rq", anywhere=True),
    )
    assert (cluster.kind, cluster.path) == (
        "ClusterKopfPeering",
        "/apis/kopf.dev/v1/clusterkopfpeerings",
    )
    assert (ns.kind, ns.path) == ("KopfPeering", "/apis/kopf.dev/v1/namespaces/apps/kopfpeerings")
    assert (anywhere.kind, anywhere.path) == ("KopfPeering", "/apis/kopf.dev/v1/kopfpeerings")
    assert ns.manifest() == {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": "rq", "namespace": "apps"},
    }
    assert cluster.describe() == "ClusterKopfPeering 'rq'"
    assert ns.describe() == "KopfPeering 'rq' in namespace 'apps'"
    assert anywhere.describe() == "KopfPeering 'rq' in any namespace"


def test_the_warning_says_what_is_missing_and_how_to_create_it() -> None:
    expected = [PeeringObject("rq", "apps"), PeeringObject("rq", "jobs")]
    assert missing_peering_message(PeeringReport(expected)) is None
    message = missing_peering_message(PeeringReport(expected, missing=[expected[1]]))
    assert message is not None
    assert message.startswith(
        "peering 'rq' is on, but KopfPeering 'rq' in namespace 'jobs' does not exist:"
        " kopf keeps this operator paused, serving no ActivityQueue, until it exists."
    )
    assert (
        """echo '{"apiVersion":"kopf.dev/v1","kind":"KopfPeering","""
        """"metadata":{"name":"rq","namespace":"jobs"}}' | kubectl apply -f -"""
    ) in message
    assert "apps" not in message
    assert message.endswith("(see docs/operator.md#several-operators-kopf-peering)")

    crds = missing_peering_message(PeeringReport([PeeringObject("rq")], crds_missing=True))
    assert crds is not None
    assert "the kopf peering CRDs are not installed" in crds
    assert "kubectl apply --server-side -f operator/crd/kopf-peering.yaml" in crds
    assert '"kind":"ClusterKopfPeering"' in crds

    anywhere = PeeringReport([PeeringObject("rq", anywhere=True)])
    anywhere.missing = list(anywhere.expected)
    assert "kubectl apply -f - -n NAMESPACE" in (missing_peering_message(anywhere) or "")

    forbidden = PeeringReport(expected, error="403 Forbidden: no", forbidden=True)
    assert "peering-clusterrole.yaml" in (missing_peering_message(forbidden) or "")


class FakeApi:
    """Answers list requests from ``found`` (path -> names) or with an ``ApiError``."""

    def __init__(self, found: dict[str, list[str]], error: ApiError | None = None) -> None:
        self.found = found
        self.error = error
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        self.requests.append((method, path, dict(params or {})))
        if self.error is not None:
            raise self.error
        if path not in self.found:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = (params or {})["fieldSelector"].removeprefix("metadata.name=")
        return {"items": [{"metadata": {"name": n}} for n in self.found[path] if n == name]}


async def test_the_check_lists_by_name_and_reports_what_is_missing() -> None:
    expected = [PeeringObject("rq", "apps"), PeeringObject("rq", "jobs")]
    api = FakeApi(
        {
            "/apis/kopf.dev/v1/namespaces/apps/kopfpeerings": ["rq"],
            "/apis/kopf.dev/v1/namespaces/jobs/kopfpeerings": ["other"],
        }
    )
    check = PeeringCheck(cast(KubeApi, api), expected)
    assert check.health() == {"name": "rq", "ok": None}
    report = await check.check()
    assert report.missing == [expected[1]] and not report.crds_missing
    assert api.requests[0] == (
        "GET",
        "/apis/kopf.dev/v1/namespaces/apps/kopfpeerings",
        {"fieldSelector": "metadata.name=rq"},
    )
    check.record(report, now=0.0)
    assert check.health() == {
        "name": "rq",
        "ok": False,
        "missing": ["KopfPeering 'rq' in namespace 'jobs'"],
    }

    no_crds = await PeeringCheck(cast(KubeApi, FakeApi({})), [PeeringObject("rq")]).check()
    assert no_crds.crds_missing and no_crds.health()["missing"] == [
        "CRDs kopfpeerings.kopf.dev, clusterkopfpeerings.kopf.dev"
    ]
    refused = FakeApi({}, ApiError(403, "Forbidden", "cannot list"))
    denied = await PeeringCheck(cast(KubeApi, refused), [PeeringObject("rq")]).check()
    assert denied.forbidden and denied.health()["error"] == "403 Forbidden: cannot list"


def test_warnings_on_change_and_as_reminders_then_info_when_found(
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected = [PeeringObject("rq")]
    check = PeeringCheck(cast(KubeApi, Refuses()), expected, remind=300)
    missing = PeeringReport(expected, missing=list(expected))
    with caplog.at_level(logging.INFO, logger="runnerq_operator.peering"):
        check.record(missing, now=0)
        check.record(PeeringReport(expected, missing=list(expected)), now=30)  # no news
        check.record(PeeringReport(expected, missing=list(expected)), now=300)  # reminder
        check.record(PeeringReport(expected), now=330)
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "INFO"]
    assert (
        caplog.records[0]
        .getMessage()
        .startswith("peering 'rq' is on, but ClusterKopfPeering 'rq' does not exist")
    )
    assert caplog.records[-1].getMessage() == (
        "kopf peering 'rq': ClusterKopfPeering 'rq' found now"
    )
    assert check.health() == {"name": "rq", "ok": True}


async def test_the_check_runs_until_the_object_appears() -> None:
    path = "/apis/kopf.dev/v1/clusterkopfpeerings"
    api = FakeApi({path: []})
    check = PeeringCheck(cast(KubeApi, api), [PeeringObject("rq")], interval=0.01)
    task = asyncio.create_task(check.run())
    await asyncio.sleep(0.1)
    assert check.report is not None and not check.report.ok and not task.done()
    assert len(api.requests) >= 2  # it looks again
    api.found[path] = ["rq"]
    await asyncio.wait_for(task, 5)
    assert check.health()["ok"] is True
