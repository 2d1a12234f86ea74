"""Start and stop real ``redis-server`` processes for tests, benchmarks and the demo."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

from tests.support.processes import terminate

__all__ = ["RedisServer", "free_port"]


_PICK = random.SystemRandom()  # (not the random module's: tests reseed that alike)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server a test starts.

    Taken at random below the kernel's ephemeral range, never by binding port 0: a port the
    kernel hands out that way comes from the range it also gives to outgoing connections,
    so after it is released the next connection anywhere on the machine may take it, and
    the server then fails with "address already in use" (seen: the operator's health port
    in a full CI run)."""
    high = _ephemeral_low() - 1
    low = max(1024, high - 12000)
    for _ in range(500):
        port = _PICK.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {low}-{high}")


class RedisServer:
    """A ``redis-server`` on a free loopback port with its own data directory.

    ``stop()`` and ``start()`` again keep the port and the data directory, so a test can
    restart Redis under running workers (with ``appendonly`` the data survives).
    """

    def __init__(
        self, *, appendonly: bool = False, password: str | None = None, tls: bool = False
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH: run `make setup` (installs it)")
        self.binary = binary
        self.port = free_port()
        self.password = password
        self.appendonly = appendonly
        self.tls = tls
        self.dir = Path(tempfile.mkdtemp(prefix="runnerq-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{urllib.parse.quote(self.password, safe='')}@" if self.password else ""
        if self.tls:
            ca = urllib.parse.quote(str(self.dir / "ca.crt"))
            return f"rediss://{auth}127.0.0.1:{self.port}?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}"

    def _make_certificates(self) -> None:
        d = self.dir
        if (d / "server.crt").exists():
            return

        def run(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True)

        run(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=runnerq-test-ca",
            "-keyout",
            str(d / "ca.key"),
            "-out",
            str(d / "ca.crt"),
        )
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(d / "server.key"),
            "-out",
            str(d / "server.csr"),
        )
        (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run(
            "x509",
            "-req",
            "-in",
            str(d / "server.csr"),
            "-CA",
            str(d / "ca.crt"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / "san.cnf"),
            "-out",
            str(d / "server.crt"),
        )

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            self._make_certificates()
            args[2] = "0"  # no plain-text port
            args += [
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.dir / "server.crt"),
                "--tls-key-file",
                str(self.dir / "server.key"),
                "--tls-ca-cert-file",
                str(self.dir / "ca.crt"),
                "--tls-auth-clients",
                "no",
            ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    if self.tls:
                        return self
                    s.sendall(b"PING\r\n")
                    if s.recv(64):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        process, self.process = self.process, None
        terminate(process, timeout=10)

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
