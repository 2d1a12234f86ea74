"""Background server processes that are always stopped: one process group each, logs to a file.

Each process runs in its own session, so a Ctrl-C in the terminal reaches only the Python process,
which then stops the servers in order. Where util-linux's ``setpriv`` exists, each server also gets
SIGKILL from the kernel when the Python process dies without cleaning up (e.g. it was SIGKILLed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.redis_server import free_port

STOP_GRACE_SECONDS = 5.0
POLL_INTERVAL_SECONDS = 0.1


class ServerError(RuntimeError):
    """A server process exited early or did not become healthy in time."""


@dataclass
class Server:
    """A running server process and the file that collects its output."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self) -> None:
        """Raise :class:`ServerError` with the log's tail if the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise ServerError(f"{self.name} exited with code {code}:\n{self.log_tail()}")

    def wait_until(self, probe: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``probe`` until it returns True; fail early if the process dies."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            if probe():
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.name}: {what} not reached in {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_SECONDS)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after a grace period; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        pid = self.process.pid
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        # WNOWAIT leaves the exited leader a zombie, so its process group id cannot be reused
        # before the SIGKILL below has also reached any helper the server started in its group.
        while not _has_exited(pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_SECONDS)
        _signal_group(pid, signal.SIGKILL)
        self.process.wait()


def start_server(
    name: str, argv: Sequence[str], *, log_dir: Path, env: dict[str, str] | None = None
) -> Server:
    """Start ``argv`` in a new session with stdout and stderr going to ``log_dir/<name>.log``."""
    log_path = log_dir / f"{name}.log"
    command = [*_die_with_parent(), *argv]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return Server(name=name, process=process, log_path=log_path)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free on 127.0.0.1 right now (below the
    ephemeral range: ``free_port``)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _die_with_parent() -> list[str]:
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def _has_exited(pid: int) -> bool:
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
