"""One virtualenv per peer library under a cache directory outside the repository, reused
across runs while its pinned requirements stay the same."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from .pins import Library

__all__ = ["default_cache_dir", "ensure_tool", "ensure_venv", "freeze"]

_MARKER = ".runnerq-bench.json"


def default_cache_dir() -> Path:
    env = os.environ.get("RUNNERQ_BENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runnerq-bench"


def _python_tag() -> str:
    return f"py{sys.version_info.major}{sys.version_info.minor}"


def _install(path: Path, requirements: tuple[str, ...], log: Path) -> Path:
    python = path / "bin" / "python"
    spec = {"requirements": list(requirements), "python": sys.version.split()[0]}
    marker = path / _MARKER
    if python.exists() and marker.exists():
        try:
            if json.loads(marker.read_text()) == spec:
                return python
        except ValueError:
            pass
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  installing {' '.join(requirements)} into {path} ...", file=sys.stderr, flush=True)
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(path)], check=True, stdout=out, stderr=out
        )
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *requirements,
            ],
            check=True,
            stdout=out,
            stderr=out,
        )
    marker.write_text(json.dumps(spec))
    return python


def ensure_venv(lib: Library, cache: Path) -> Path:
    """The Python interpreter that runs ``lib``'s adapter (installing its venv if needed)."""
    if not lib.requirements:
        return Path(sys.executable)
    digest = hashlib.sha256("\n".join(lib.requirements).encode()).hexdigest()[:8]
    path = cache / "venvs" / f"{lib.name}-{lib.version}-{_python_tag()}-{digest}"
    return _install(path, lib.requirements, cache / "logs" / f"install-{lib.name}.log")


def ensure_tool(name: str, requirement: str, cache: Path) -> Path:
    """A command-line tool (e.g. py-spy) installed into its own venv; returns its path."""
    version = requirement.split("==", 1)[-1]
    path = cache / "venvs" / f"tool-{name}-{version}-{_python_tag()}"
    python = _install(path, (requirement,), cache / "logs" / f"install-{name}.log")
    return python.parent / name


def freeze(python: Path) -> list[str]:
    """``pip freeze`` of an interpreter's environment (recorded in the results)."""
    out = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--disable-pip-version-check", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in out.stdout.splitlines() if line and not line.startswith("#")]
