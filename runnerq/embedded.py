"""An embedded Redis for the demo and quick experiments: a ``redis-server`` child process on
a free loopback port, in a temporary directory, stopped when the block ends."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from .errors import ConfigurationError

__all__ = ["embedded_redis"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    """Start ``redis-server`` from PATH and yield its URL."""
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        raise ConfigurationError(
            "no Redis configured and no redis-server on PATH: install one"
            " (Debian: apt-get install redis-server; or `make setup`),"
            " or point RUNNERQ_REDIS_URL at a running Redis"
        )
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="runnerq-embedded-")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--logfile",
            f"{workdir}/redis.log",
        ],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise ConfigurationError(
                        f"embedded redis-server did not start ({binary})"
                    ) from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
