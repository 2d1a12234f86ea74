"""The subscription reader's liveness check (pure logic: a scripted stand-in subscription)."""

from __future__ import annotations

from typing import Any

import pytest

from runnerq.pubsub import read_messages


class Scripted:
    """Answers get_message from a script; None means 'nothing within the timeout'."""

    def __init__(self, replies: list[dict[str, Any] | None]) -> None:
        self.replies = replies
        self.pings = 0

    async def get_message(self, ignore_subscribe_messages: bool, timeout: float) -> Any:
        if not self.replies:
            raise ConnectionResetError("script over")
        return self.replies.pop(0)

    async def ping(self) -> None:
        self.pings += 1


async def test_silent_connection_raises_after_an_unanswered_ping() -> None:
    sub = Scripted([None, None, None])
    seen: list[str] = []
    with pytest.raises(ConnectionError, match="no answer to PING"):
        await read_messages(sub, seen.append, idle=0.0)
    assert sub.pings == 1


async def test_pong_keeps_it_going_and_messages_are_delivered() -> None:
    sub = Scripted(
        [
            {"type": "message", "data": "a"},
            None,
            {"type": "pong", "data": ""},
            None,
            {"type": "message", "data": "b"},
        ]
    )
    seen: list[str] = []
    with pytest.raises(ConnectionResetError):
        await read_messages(sub, seen.append, idle=0.0)
    assert seen == ["a", "b"]
    assert sub.pings == 2
