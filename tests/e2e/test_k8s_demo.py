"""``make k8s-demo`` (hack/k8s_demo.py) runs to the end: its own control plane, the chart, the
operator and a worker as local processes, the replicas 0 -> N -> 0 with the Events, and
nothing left running afterwards."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .cluster import ControlPlane

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def test_make_k8s_demo_target_runs_the_script() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^k8s-demo: setup\n\t\$\(PY\) hack/k8s_demo\.py$", makefile, re.MULTILINE)


def test_the_demo_shows_zero_to_n_to_zero_and_stops_everything(
    control_plane: ControlPlane,  # the binaries are built; the demo starts a plane of its own
) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "k8s_demo.py"), "--scale-down-seconds", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    steps = [
        "control plane v",
        "helm install runnerq charts/runnerq",
        "operator started here: python -m runnerq_operator",
        "kubectl apply -f manifests/examples/activityqueue.yaml",
        "emails-worker replicas: 0",
        "enqueued 300 activities",
        "emails-worker replicas: 0 -> ",
        "worker started",
        "queue drained",
        "Scaling condition: 0 replicas recommended; keeping ",
        " -> 0\n",
        "Events of ActivityQueue emails:",
        "stopped; nothing left running",
    ]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions, [s for s, p in zip(steps, positions, strict=True) if p < 0]
    assert positions == sorted(positions), out
    up = re.search(r"emails-worker replicas: 0 -> (\d+)", out)
    assert up is not None and int(up.group(1)) > 0
    assert re.search(r"Normal\s+ScaledUp\s+0 -> \d+ replicas: 300 activities", out), out
    assert re.search(r"Normal\s+ScaledDown\s+\d+ -> 0 replicas", out), out
    pids = re.search(r"nothing left running \(pids ([\d ]+)\)", out)
    assert pids is not None
    for pid in map(int, pids.group(1).split()):
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), pid


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
