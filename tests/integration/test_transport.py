"""The transport boundary: redis-py's internals are reached from runnerq/transport.py only, and
what its raw stream reports reaches callers as runnerq's errors."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from runnerq import (
    ActivityClient,
    BulkEnqueueUnavailableError,
    RedisUnavailableError,
    RunnerQError,
)
from runnerq.transport import RawTransport, StreamBroken

# redis-py's pool and connection internals (and the pool class runnerq subclasses).
_INTERNALS = re.compile(
    r"send_packed_command|read_response|pack_commands|get_connection|ensure_connection"
    r"|get_available_connection|can_get_connection|_in_maintenance|inuse_connections"
    r"|connection_pool|BlockingConnectionPool|AbstractConnection"
)


def test_only_the_transport_module_reaches_into_redis_py() -> None:
    package = Path(__file__).parents[2] / "runnerq"
    found = {
        f"{path.name}:{n}: {line.strip()}"
        for path in package.glob("*.py")
        if path.name != "transport.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _INTERNALS.search(line)
    }
    assert not found


class _BreaksOnResend:
    """The client's raw transport, whose second stream (the resend after Redis lost its
    scripts) fails part way."""

    def __init__(self, real: RawTransport) -> None:
        self.real = real
        self.streams = 0

    async def stream(self, items: Iterable[Any], pack: Callable[[Any], bytes]) -> Any:
        self.streams += 1
        if self.streams == 1:
            return await self.real.stream(items, pack)
        raise StreamBroken([], []) from ConnectionError("connection lost during the resend")


async def test_a_resend_after_lost_scripts_that_breaks_raises_runnerq_errors(
    client: ActivityClient, raw_redis: aioredis.Redis
) -> None:
    await client.execute_activity("t", 0)  # scripts loaded
    for attempt in ("bulk", "one"):
        await raw_redis.script_flush()  # as a restart does: the first stream finds no script
        raw: Any = client.store._raw
        breaking = _BreaksOnResend(raw)
        client.store._raw = breaking  # type: ignore[assignment]
        try:
            if attempt == "bulk":
                with pytest.raises(BulkEnqueueUnavailableError) as bulk:
                    await client.enqueue_many([("t", i) for i in range(3)])
                # Nothing ran (no script): none applied, the three written are unknown.
                assert (bulk.value.applied, len(bulk.value.unknown)) == ([], 3)
            else:
                with pytest.raises(RedisUnavailableError) as one:
                    await client.execute_activity("t", 1)
                assert isinstance(one.value, RunnerQError)
            assert breaking.streams == 2
        finally:
            client.store._raw = raw
    assert (await client.get_stats()).enqueued == 1
