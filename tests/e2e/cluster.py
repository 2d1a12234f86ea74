"""Start a real Kubernetes control plane on loopback ports, and always tear it down.

etcd, kube-apiserver and kube-controller-manager always; kube-scheduler and kwok (one fake Node on
which pods become Ready without containers) when they were built. Each start gets a fresh temporary
directory with its own PKI, data and logs, removed again at the end.

For people::

    python -m tests.e2e.cluster up      # prints `export KUBECONFIG=...`, runs until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from . import components
from .binaries import Binaries, ensure_binaries
from .pki import Pki, create_pki
from .processes import Server, ServerError, free_ports, start_server

STARTUP_TIMEOUT_SECONDS = 120.0
COMMAND_TIMEOUT_SECONDS = 120.0

Launch = Callable[[str, list[str]], Server]


@dataclass(frozen=True)
class ControlPlane:
    """A running control plane: where to reach it, and helpers to run kubectl and helm."""

    kubeconfig: Path
    server: str
    bin_dir: Path
    kubernetes_version: str
    workdir: Path
    servers: tuple[Server, ...]
    #: The fake Node that kwok manages, or None when kube-scheduler + kwok are not running
    #: (then pods stay Pending, but ReplicaSets, garbage collection etc. still work).
    node_name: str | None

    @property
    def has_nodes(self) -> bool:
        """True when pods get scheduled and become Ready (on kwok's fake Node)."""
        return self.node_name is not None

    def env(self) -> dict[str, str]:
        """The process environment for clients of this control plane (kubectl, helm, operators)."""
        helm = self.workdir / "helm"
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(helm / "cache"),
            "HELM_CONFIG_HOME": str(helm / "config"),
            "HELM_DATA_HOME": str(helm / "data"),
        }

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the version-matched kubectl; raise with its stderr when ``check`` and it fails."""
        return self._run("kubectl", args, input=input, check=check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm against this control plane."""
        return self._run("helm", args, input=None, check=check)

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        """Run ``kubectl ARGS -o json`` and parse the output."""
        parsed = json.loads(self.kubectl(*args, "-o", "json").stdout)
        if not isinstance(parsed, dict):
            raise TypeError(
                f"kubectl {' '.join(args)} printed {type(parsed).__name__}, not an object"
            )
        return parsed

    def apply(self, *manifests: Mapping[str, Any]) -> None:
        """``kubectl apply`` the given objects (server-side, so a test owns the fields it sets)."""
        documents = yaml.safe_dump_all([dict(m) for m in manifests], sort_keys=False)
        self.kubectl(
            "apply", "--server-side", "--field-manager=runnerq-e2e", "-f", "-", input=documents
        )

    def check_running(self) -> None:
        """Raise :class:`ServerError` if any component has exited."""
        for server in self.servers:
            server.check_running()

    def _run(
        self, binary: str, args: tuple[str, ...], *, input: str | None, check: bool
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / binary), *args]
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, command, result.stdout, result.stderr
            )
        return result


@contextlib.contextmanager
def start_control_plane(binaries: Binaries, *, with_nodes: bool = True) -> Iterator[ControlPlane]:
    """Start a control plane; stop every process and remove its directory when the block exits.

    ``with_nodes`` adds kube-scheduler + kwok + a fake Node when those binaries are available.
    """
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="runnerq-e2e-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        (workdir / "logs").mkdir()
        yield _start(binaries, workdir, stack, with_nodes=with_nodes and binaries.has_kwok)


def _start(
    binaries: Binaries, workdir: Path, stack: contextlib.ExitStack, *, with_nodes: bool
) -> ControlPlane:
    logs = workdir / "logs"
    pki = create_pki(workdir / "pki", service_ip=components.SERVICE_IP)
    ports = components.Ports(*free_ports(5))
    kubeconfig = workdir / "admin.kubeconfig"
    components.write_kubeconfig(kubeconfig, pki, ports.server)
    servers: list[Server] = []

    def launch(name: str, argv: list[str]) -> Server:
        server = start_server(name, argv, log_dir=logs)
        stack.callback(server.stop)  # stopped in reverse order of starting
        servers.append(server)
        return server

    etcd = launch("etcd", components.etcd_args(binaries.path("etcd"), workdir / "etcd", ports))
    etcd.wait_until(
        lambda: _etcd_healthy(ports.etcd_client), timeout=STARTUP_TIMEOUT_SECONDS, what="health"
    )

    apiserver = launch(
        "kube-apiserver",
        components.apiserver_args(binaries.path("kube-apiserver"), workdir, pki, ports),
    )
    admin = _admin_tls(pki)
    apiserver.wait_until(
        lambda: _https_ok(f"{ports.server}/readyz", admin),
        timeout=STARTUP_TIMEOUT_SECONDS,
        what="/readyz",
    )

    args = components.controller_manager_args(
        binaries.path("kube-controller-manager"), workdir, kubeconfig, pki, ports
    )
    manager = launch("kube-controller-manager", args)
    manager.wait_until(
        lambda: _https_ok(f"https://127.0.0.1:{ports.controller_manager}/healthz", _insecure_tls()),
        timeout=STARTUP_TIMEOUT_SECONDS,
        what="/healthz",
    )

    plane = ControlPlane(
        kubeconfig=kubeconfig,
        server=ports.server,
        bin_dir=binaries.bin_dir,
        kubernetes_version=binaries.kubernetes_version,
        workdir=workdir,
        servers=tuple(servers),
        node_name=components.FAKE_NODE_NAME if with_nodes else None,
    )
    if with_nodes:
        _start_nodes(plane, binaries, launch, ports)
    return replace(plane, servers=tuple(servers))


def _start_nodes(
    plane: ControlPlane, binaries: Binaries, launch: Launch, ports: components.Ports
) -> None:
    args = components.scheduler_args(
        binaries.path("kube-scheduler"), plane.workdir, plane.kubeconfig, ports
    )
    scheduler = launch("kube-scheduler", args)
    scheduler.wait_until(
        lambda: _https_ok(f"https://127.0.0.1:{ports.scheduler}/healthz", _insecure_tls()),
        timeout=STARTUP_TIMEOUT_SECONDS,
        what="/healthz",
    )
    kwok = launch(
        "kwok", components.kwok_args(binaries.path("kwok"), plane.kubeconfig, binaries.kwok_stages)
    )
    plane.apply(components.fake_node())
    kwok.wait_until(
        lambda: _node_ready(plane), timeout=STARTUP_TIMEOUT_SECONDS, what="fake Node Ready"
    )


def _node_ready(plane: ControlPlane) -> bool:
    node = plane.kubectl_json("get", "node", components.FAKE_NODE_NAME)
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _open(url: str, context: ssl.SSLContext | None = None) -> Any:
    # Never through a proxy from the environment: these are all loopback addresses.
    handlers = [urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)]
    return urllib.request.build_opener(*handlers).open(url, timeout=2)


def _etcd_healthy(port: int) -> bool:
    try:
        with _open(f"http://127.0.0.1:{port}/health") as response:
            return bool(json.load(response).get("health") == "true")
    except (OSError, ValueError):
        return False


def _https_ok(url: str, context: ssl.SSLContext) -> bool:
    try:
        with _open(url, context) as response:
            return bool(response.status == 200)
    except OSError:  # includes urllib.error.URLError and HTTPError
        return False


def _admin_tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return context


def _insecure_tls() -> ssl.SSLContext:
    # kube-controller-manager and kube-scheduler serve /healthz with a self-signed certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _up(with_nodes: bool) -> int:
    binaries = ensure_binaries()
    started = time.monotonic()
    # Tear down on Ctrl-C (even when started from a script that ignores SIGINT), on SIGTERM
    # (e.g. from `timeout` or a process manager) and on SIGHUP (the terminal went away).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_keyboard_interrupt)
    try:
        with start_control_plane(binaries, with_nodes=with_nodes) as plane:
            elapsed = time.monotonic() - started
            nodes = f"fake node {plane.node_name}" if plane.node_name else "no nodes"
            print(
                f"control plane {plane.kubernetes_version} ready in {elapsed:.1f}s ({nodes})",
                file=sys.stderr,
            )
            print(
                f"logs: {plane.workdir / 'logs'}; Ctrl-C stops it and removes {plane.workdir}",
                file=sys.stderr,
            )
            print(f"export KUBECONFIG={plane.kubeconfig}")
            print(f'export PATH="{plane.bin_dir}:$PATH"', flush=True)
            while True:
                plane.check_running()
                time.sleep(1)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.cluster", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a control plane and keep it running until Ctrl-C")
    up.add_argument(
        "--no-nodes", action="store_true", help="skip kube-scheduler, kwok and the fake Node"
    )
    commands.add_parser("ensure", help="only build the missing binaries")
    options = parser.parse_args(argv)
    if options.command == "ensure":
        ensure_binaries()
        return 0
    return _up(with_nodes=not options.no_nodes)


if __name__ == "__main__":
    sys.exit(main())
