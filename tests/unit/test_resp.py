"""``pack_command`` writes what redis-py's ``Connection.pack_command`` writes, for the
arguments runnerq sends (text and integers), and refuses anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection

from runnerq.resp import CommandPrefix, pack_command


def _redis_py(args: list[str | int]) -> bytes:
    return b"".join(Connection().pack_command(*args))


@given(
    st.sampled_from(["EVALSHA", "SET", "HSET"]),
    st.lists(st.text() | st.integers(), max_size=20),
)
def test_same_bytes_as_redis_py(command: str, rest: list[str | int]) -> None:
    # (redis-py splits a first argument with spaces into words: runnerq's never has any.)
    # st.text() draws no lone surrogates: the refusal of those is tested on its own below.
    args: list[str | int] = [command, *rest]
    assert pack_command(args) == _redis_py(args)


@pytest.mark.parametrize(
    "args",
    [
        ["EVALSHA", "abc", 2, "k1", "k2", '{"x":1}'],
        ["SET", "naïve", "日本語 ✓"],  # byte lengths, not character lengths
        ["PING"],
    ],
)
def test_examples(args: list[str | int]) -> None:
    assert pack_command(args) == _redis_py(args)


@pytest.mark.parametrize("bad", [True, b"bytes", 1.5, None])
def test_other_types_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="text or an integer"):
        pack_command(["SET", "k", bad])  # type: ignore[list-item]


@given(
    st.lists(st.text() | st.integers(), min_size=1, max_size=8),
    st.lists(st.text() | st.integers(), max_size=8),
)
def test_a_prefix_packs_the_same_bytes(first: list[str | int], rest: list[str | int]) -> None:
    args: list[str | int] = ["EVALSHA", *first, *rest]
    assert pack_command(rest, CommandPrefix(["EVALSHA", *first])) == _redis_py(args)


@given(
    st.lists(st.text() | st.integers(), min_size=1, max_size=8),
    st.characters(categories=["Cs"]),
    st.data(),
)
def test_lone_surrogates_are_refused(
    args: list[str | int], surrogate: str, data: st.DataObject
) -> None:
    """Text with a lone surrogate cannot be encoded as UTF-8: redis-py refuses it, and so does
    ``pack_command``, whether the text is in a prefix (ASCII or not) or after it."""
    at = data.draw(st.integers(0, len(args)), label="at")
    text = data.draw(st.text(max_size=3), label="text")
    split = data.draw(st.integers(1, len(args) + 1), label="split")
    args = [*args[:at], text + surrogate + text, *args[at:]]
    with pytest.raises(UnicodeEncodeError):
        _redis_py(["EVALSHA", *args])
    with pytest.raises(UnicodeEncodeError):
        pack_command(["EVALSHA", *args])
    prefix = CommandPrefix(["EVALSHA", *args[:split]])
    with pytest.raises(UnicodeEncodeError):
        pack_command(args[split:], prefix)


def test_a_prefix_that_is_not_ascii() -> None:
    prefix = CommandPrefix(["EVALSHA", "sha", 1, "runnerq:{日本}:jobs"])
    assert prefix.body is None
    args: list[str | int] = ["naïve", 7]
    assert pack_command(args, prefix) == _redis_py([*prefix.args, *args])


def test_ascii_prefix_with_text_that_is_not() -> None:
    prefix = CommandPrefix(["EVALSHA", "sha", 1, "runnerq:{q}:jobs"])
    assert prefix.body is not None
    args: list[str | int] = ["日本語", 7]
    assert pack_command(args, prefix) == _redis_py([*prefix.args, *args])
