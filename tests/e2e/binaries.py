"""Find (and on first use build) the control-plane binaries through ``hack/control-plane.sh``."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "hack" / "control-plane.sh"


@dataclass(frozen=True)
class Binaries:
    """Where the pinned binaries are, and which versions they are."""

    bin_dir: Path
    kubernetes_version: str
    kwok_stages: Path

    def path(self, name: str) -> Path:
        """The path of one binary, e.g. ``path("kubectl")``."""
        return self.bin_dir / name

    @property
    def has_kwok(self) -> bool:
        """True when kube-scheduler, kwok and kwok's stages are all there (they are optional)."""
        needed = [self.path("kube-scheduler"), self.path("kwok"), self.kwok_stages]
        return all(path.exists() for path in needed)


def ensure_binaries(progress: TextIO | None = None) -> Binaries:
    """Build any missing binary (minutes on first use, a second after), then locate them.

    The script's progress lines go to ``progress`` (stderr by default).
    """
    out = progress if progress is not None else sys.stderr
    with subprocess.Popen(
        ["bash", str(SCRIPT), "ensure"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            out.flush()
    if process.returncode != 0:
        raise RuntimeError(f"{SCRIPT} ensure failed with exit code {process.returncode}")
    return locate_binaries()


def locate_binaries() -> Binaries:
    """The paths and versions that ``hack/control-plane.sh env`` reports (builds nothing)."""
    result = subprocess.run(
        ["bash", str(SCRIPT), "env"], capture_output=True, text=True, check=True
    )
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return Binaries(
        bin_dir=Path(values["BIN_DIR"]),
        kubernetes_version=values["KUBERNETES_VERSION"],
        kwok_stages=Path(values["KWOK_STAGES"]),
    )
