"""``runnerq console`` as a process: SIGTERM (how Kubernetes stops its pod, where the console
is PID 1 and would ignore the signal without a handler) ends it with 0, live streams
included; the cluster flags are refused clearly when they cannot work."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.polling import eventually
from tests.support.processes import terminate
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, redis_url: str, pipe: bool = False) -> subprocess.Popen[bytes]:
    # Not in a pod, whatever the machine running the tests is: no in-cluster detection.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
    out = subprocess.PIPE if pipe else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "runnerq", "console", "--redis-url", redis_url, *args],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=out,
        stdin=subprocess.DEVNULL,
    )


def open_stream(port: int) -> socket.socket:
    """A live stream held open, as a browser tab keeps it."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    assert conn.recv(64).startswith(b"HTTP/1.1 200"), "the stream did not open"
    return conn


async def test_sigterm_stops_the_console_with_an_open_stream(redis_url: str) -> None:
    port = free_port()
    process = run("--no-auth", "--port", str(port), redis_url=redis_url)
    stream = None
    try:

        async def up() -> bool:
            assert process.poll() is None, "the console exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        await eventually(up, timeout=30, interval=0.1, what="the console listening")
        stream = open_stream(port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if stream is not None:
            stream.close()
        terminate(process)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--kube-events",), b"need a cluster"),
        (("--kube-namespace", "team-a"), b"need a cluster"),
        (("--kubeconfig", "/nonexistent/kubeconfig"), b"cannot read the kubeconfig"),
        (("--kubeconfig", "k", "--no-kube"), b"--no-kube goes without --kubeconfig"),
    ],
)
def test_cluster_flags_that_cannot_work_are_refused(
    redis_url: str, args: tuple[str, ...], words: bytes
) -> None:
    process = run("--no-auth", *args, redis_url=redis_url, pipe=True)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, (args, err)
    assert words in err, (args, err)
