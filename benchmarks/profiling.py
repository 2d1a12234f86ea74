"""Sampling a worker with py-spy during a processing run, and summing up where time goes."""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "PY_SPY",
    "attach_py_spy",
    "format_summary",
    "package_of",
    "parse_frame",
    "py_spy_command",
    "summarize",
]

PY_SPY = "py-spy==0.4.3"

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def attach_py_spy(py_spy: Path, out: Path, log: Path, rate: int = 500) -> Callable[..., Any]:
    """``attach(pid)`` starts sampling and returns ``detach()``, which stops and writes
    ``out`` (py-spy's raw collapsed stacks)."""

    def attach(pid: int) -> Callable[[], None]:
        out.parent.mkdir(parents=True, exist_ok=True)
        err = log.open("a")
        proc = subprocess.Popen(
            [
                str(py_spy),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--function",
                "--nonblocking",
                "--rate",
                str(rate),
                "-o",
                str(out),
            ],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )

        def detach() -> None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            err.close()

        return detach

    return attach


def py_spy_command(py_spy: Path, out: Path, rate: int = 500) -> tuple[str, ...]:
    """The prefix that runs a command under py-spy (raw collapsed stacks into ``out``)."""
    return (
        str(py_spy),
        "record",
        "--format",
        "raw",
        "--function",
        "--nonblocking",
        "--rate",
        str(rate),
        "-o",
        str(out),
        "--",
    )


def parse_frame(frame: str) -> tuple[str, str]:
    """``"func (path/file.py:12)"`` -> ``("path/file.py", "func")``."""
    m = _FRAME.match(frame.strip())
    if m is None:
        return ("?", frame.strip())
    return (m["file"], m["func"])


def package_of(path: str) -> str:
    p = path.replace("\\", "/")
    if "benchmarks/" in p:
        return "harness"
    if p.startswith("runnerq/") or "/runnerq/" in p:
        return "runnerq"
    if p.startswith("redis/") or "/redis/" in p:
        return "redis-py"
    if p.startswith("asyncio/") or "/asyncio/" in p:
        return "asyncio"
    if p.startswith("json/") or "/json/" in p:
        return "json"
    return "other"


def _short(path: str) -> str:
    p = path.replace("\\", "/")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in p:
            p = p.split(marker, 1)[1]
    return p


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    """Shares of the sampled (non-idle) time, imports left out: by function (self and
    inclusive), by package, and by the innermost runnerq function on the stack (which runnerq
    code the time is spent for, library calls below it included)."""
    self_time: Counter[tuple[str, str]] = Counter()
    by_package: Counter[str] = Counter()
    runnerq_incl: Counter[tuple[str, str]] = Counter()
    attributed: Counter[str] = Counter()
    total = imports = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if "importlib._bootstrap" in stack:
            imports += count
            continue
        frames = [parse_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        frames = [(_short(f), fn) for f, fn in frames]
        total += count
        self_time[frames[-1]] += count
        by_package[package_of(frames[-1][0])] += count
        ours = [f for f in frames if package_of(f[0]) == "runnerq"]
        for frame in set(ours):
            runnerq_incl[frame] += count
        attributed[f"{ours[-1][0]}:{ours[-1][1]}" if ours else "(outside runnerq)"] += count
    if total == 0:
        return {"samples": 0, "import_samples": imports}

    def share(counter: Counter[Any]) -> list[dict[str, Any]]:
        return [
            {"where": k if isinstance(k, str) else f"{k[0]}:{k[1]}", "share": n / total}
            for k, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "import_samples": imports,
        "self_by_package": {k: v / total for k, v in by_package.most_common()},
        "top_self": share(self_time),
        "top_runnerq_inclusive": [
            {**e, "self_share": self_time[k] / total}
            for e, (k, _) in zip(share(runnerq_incl), runnerq_incl.most_common(top), strict=True)
        ],
        "by_innermost_runnerq_frame": share(attributed),
    }


def format_summary(name: str, summary: dict[str, Any]) -> str:
    if not summary.get("samples"):
        return f"{name}: no samples"
    lines = [f"{name}: {summary['samples']} samples (non-idle, imports left out)"]
    pk = ", ".join(f"{k} {v:.0%}" for k, v in summary["self_by_package"].items())
    lines.append(f"  self time by package: {pk}")
    lines.append("  top self time:")
    lines += [f"    {e['share']:6.1%}  {e['where']}" for e in summary["top_self"][:10]]
    lines.append("  time by innermost runnerq function on the stack (library calls included):")
    lines += [
        f"    {e['share']:6.1%}  {e['where']}" for e in summary["by_innermost_runnerq_frame"][:10]
    ]
    lines.append("  runnerq functions, inclusive (self):")
    lines += [
        f"    {e['share']:6.1%} ({e['self_share']:5.1%})  {e['where']}"
        for e in summary["top_runnerq_inclusive"][:12]
    ]
    return "\n".join(lines)
