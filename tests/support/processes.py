"""Ending child processes the same way everywhere in the tests."""

from __future__ import annotations

import subprocess

__all__ = ["terminate"]


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; nothing if already ended."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
