"""``translate_errors``: redis-py's connection errors become ``RedisUnavailableError``."""

from __future__ import annotations

import pytest
import redis.exceptions as rexc

from runnerq.connection import translate_errors
from runnerq.errors import RedisUnavailableError


@pytest.mark.parametrize(
    "error", [rexc.ConnectionError("refused"), rexc.TimeoutError("slow"), OSError("reset")]
)
def test_connection_errors_become_redis_unavailable(error: Exception) -> None:
    with (
        pytest.raises(RedisUnavailableError, match=r"^cannot enqueue: ") as info,
        translate_errors("cannot enqueue"),
    ):
        raise error
    assert info.value.__cause__ is error


def test_a_failed_login_says_so() -> None:
    with (
        pytest.raises(RedisUnavailableError, match="cannot enqueue: authentication failed"),
        translate_errors("cannot enqueue"),
    ):
        raise rexc.AuthenticationError("WRONGPASS")


def test_other_errors_pass_through() -> None:
    with pytest.raises(rexc.ResponseError), translate_errors("cannot enqueue"):
        raise rexc.ResponseError("WRONGTYPE")
    with pytest.raises(KeyError), translate_errors("cannot enqueue"):
        raise KeyError("x")


def test_nothing_raised_nothing_changed() -> None:
    with translate_errors("cannot enqueue"):
        value = 1
    assert value == 1
