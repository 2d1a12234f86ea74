"""Real multi-server Redis set-ups on loopback: a Redis Cluster (3 masters + 3 replicas) and a
Sentinel set (1 master, 2 replicas, 3 sentinels), with the failovers tests need."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.redis_server import free_port

__all__ = ["RedisClusterSet", "SentinelSet"]


def _redis_cli(port: int, *args: str, timeout: float = 10) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=timeout
    )
    return out.stdout.strip()


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on port {port}")


class _Processes:
    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, port: int, *args: str) -> None:
        log = self.dir / f"{port}.log"
        self.procs[port] = subprocess.Popen(
            ["redis-server", *args, "--logfile", str(log)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_port(port, time.monotonic() + 10)

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def cleanup(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterSet(_Processes):
    """Six cluster-enabled redis-servers joined by ``redis-cli --cluster create``."""

    def __init__(self) -> None:
        super().__init__("runnerq-cluster-")
        self.ports = [free_port() for _ in range(6)]
        self.bus_ports = [free_port() for _ in range(6)]  # explicit: port + 10000 may not exist

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def start(self) -> RedisClusterSet:
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            node_dir = self.dir / str(port)
            node_dir.mkdir()
            self.spawn(
                port,
                "--port",
                str(port),
                "--cluster-port",
                str(bus),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(node_dir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1500",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",
                "0",
            )
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = all("cluster_state:ok" in _redis_cli(p, "cluster", "info") for p in self.procs)
            infos = [_redis_cli(p, "info", "replication") for p in self.procs]
            synced = all("role:master" in i or "master_link_status:up" in i for i in infos)
            if ok and synced:
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach state ok with its replicas in sync")

    def master_of(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot."""
        slot = int(_redis_cli(next(iter(self.procs)), "cluster", "keyslot", key))
        for line in _redis_cli(next(iter(self.procs)), "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise RuntimeError(f"no master serves slot {slot}")

    def fail_over(self, key: str, timeout: float = 30) -> int:
        """Kill the master of ``key``'s slot; wait for a replica to take over; return its port."""
        old = self.master_of(key)
        self.kill(old)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                new = self.master_of(key)
                if new != old and "cluster_state:ok" in _redis_cli(new, "cluster", "info"):
                    return new
            except (RuntimeError, StopIteration):
                pass
            time.sleep(0.1)
        raise RuntimeError("no replica took over")

    def __enter__(self) -> RedisClusterSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class SentinelSet(_Processes):
    """One master, two replicas and three sentinels watching service ``runnerq``."""

    service = "runnerq"

    def __init__(self) -> None:
        super().__init__("runnerq-sentinel-")
        self.data_ports = [free_port() for _ in range(3)]
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> SentinelSet:
        master = self.data_ports[0]
        for i, port in enumerate(self.data_ports):
            args = [
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--repl-diskless-sync-delay",
                "0",
            ]
            if i:
                args += ["--replicaof", "127.0.0.1", str(master)]
            self.spawn(port, *args)
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            self.spawn(port, str(conf), "--sentinel")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            synced = all(
                "master_link_status:up" in _redis_cli(p, "info", "replication")
                for p in self.data_ports[1:]
            )
            seen = _redis_cli(self.sentinel_ports[0], "sentinel", "replicas", self.service)
            if synced and seen.count("slave") >= 2:
                return self
            time.sleep(0.1)
        raise RuntimeError("the sentinel set did not come up")

    def master_port(self) -> int:
        addr = _redis_cli(
            self.sentinel_ports[0], "sentinel", "get-master-addr-by-name", self.service
        )
        return int(addr.split()[-1])

    def fail_over(self, timeout: float = 60) -> int:
        """Kill the master; wait until the sentinels promoted a replica. Returns its port."""
        old = self.master_port()
        self.kill(old)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = self.master_port()
            if new != old and "role:master" in _redis_cli(new, "info", "replication"):
                return new
            time.sleep(0.1)
        raise RuntimeError("the sentinels did not promote a replica")

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
