"""Fixtures for the end-to-end tests: one real control plane for the whole session.

The binaries are built before the first e2e test runs (``pytest_collection_finish``), outside any
per-test timeout: the first run on a machine takes many minutes, later ones about a second.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .binaries import Binaries, ensure_binaries
from .cluster import ControlPlane, start_control_plane
from .operator_harness import OperatorProcess, install_crd, log_tail

BINARIES = pytest.StashKey[Binaries]()


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml; registering twice is harmless.
    config.addinivalue_line(
        "markers", "e2e: needs a real Kubernetes control plane (built on first use)"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(item.get_closest_marker("e2e") for item in session.items):
        _binaries(session.config)


def _binaries(config: pytest.Config) -> Binaries:
    """Ensure the binaries once per session, with output capturing off so the progress shows."""
    if BINARIES not in config.stash:
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            config.stash[BINARIES] = ensure_binaries()
    return config.stash[BINARIES]


@pytest.fixture(scope="session")
def control_plane(pytestconfig: pytest.Config) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager (+ kube-scheduler and kwok when built).

    ``KUBECONFIG`` points at its admin kubeconfig for the whole session, so kopf and other clients
    started by tests find it.
    """
    with start_control_plane(_binaries(pytestconfig)) as plane:
        previous = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        try:
            yield plane
        finally:
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace, deleted after the test (without waiting for its contents to go)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


# The ActivityQueue CRD (once per module) and the operator as a process, watching the test's
# namespace; shared by the operator's e2e modules.
@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane) -> str:
    install_crd(control_plane)
    return "activityqueues.runnerq.io"


@pytest.fixture
def operator(
    control_plane: ControlPlane, crd: str, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane.kubeconfig, namespace, tmp_path / "operator.log")
    try:
        yield process.start()
    finally:
        process.stop()
        print(f"--- operator log (tail) ---\n{log_tail(process.log())}")
