"""Reading a pub/sub subscription that notices when its connection went silent.

A subscription waits for messages without a read timeout, so a connection that died without
a FIN or RST (a peer gone, a network cut through a proxy) would wait forever. After
``idle`` seconds without a message the reader sends PING; no answer within ``idle`` more
seconds raises ``ConnectionError``, and the caller reconnects (and re-reads what it waits for).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["PUBSUB_IDLE", "read_messages"]

PUBSUB_IDLE = 15.0


async def read_messages(
    pubsub: Any, on_message: Callable[[str], None], idle: float = PUBSUB_IDLE
) -> None:
    """Call ``on_message(data)`` for each message until the connection fails (raises)."""
    pinged_at: float | None = None
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=idle)
        if message is None:
            if pinged_at is not None and time.monotonic() - pinged_at >= idle:
                raise ConnectionError(f"no answer to PING on the subscription within {idle:g}s")
            if pinged_at is None:
                await pubsub.ping()
                pinged_at = time.monotonic()
            continue
        pinged_at = None  # any traffic, the PONG included, shows the connection is alive
        if message.get("type") == "message":
            on_message(str(message["data"]))
