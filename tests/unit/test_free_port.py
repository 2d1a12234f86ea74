"""The test harness's ports: free, and never from the kernel's ephemeral range."""

from __future__ import annotations

import socket

from tests.e2e.processes import free_ports
from tests.support.redis_server import _ephemeral_low, free_port


def test_ports_are_free_and_below_the_ephemeral_range() -> None:
    """A port from the ephemeral range, once released, may be taken by any outgoing
    connection before the server binds it (an operator failed so in a CI run)."""
    ports = [free_port() for _ in range(50)] + free_ports(5)
    assert all(1024 <= p < _ephemeral_low() for p in ports)
    assert len(set(free_ports(5))) == 5
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))  # free indeed
