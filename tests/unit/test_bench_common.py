"""The adapters' shared hit counter: marks and per-hit lines on the protocol descriptor."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from benchmarks.peers import _common


@pytest.fixture
def protocol_pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    r, w = os.pipe()
    monkeypatch.setattr(_common, "_out_fd", w)
    yield r
    os.close(r)
    os.close(w)


def _lines(fd: int) -> list[dict[str, object]]:
    return [json.loads(line) for line in os.read(fd, 65536).decode().splitlines()]


def test_marks_are_written_once_each(protocol_pipe: int) -> None:
    hits = _common.Hits([2, 4], record=False)
    for i in range(5):
        hits.hit(i)
    events = _lines(protocol_pipe)
    assert [e["count"] for e in events] == [2, 4]
    assert all(e["event"] == "mark" for e in events)


def test_recording_writes_every_hit(protocol_pipe: int) -> None:
    hits = _common.Hits([], record=True)
    hits.hit(7)
    hits.hit(8)
    events = _lines(protocol_pipe)
    assert [(e["event"], e["i"]) for e in events] == [("hit", 7), ("hit", 8)]


def _pending_lines(fd: int) -> list[dict[str, object]]:
    """What is in the pipe now, without waiting for more (none: an empty list)."""
    os.set_blocking(fd, False)
    try:
        return _lines(fd)
    except BlockingIOError:
        return []


def test_module_hit_without_a_counter_is_a_no_op(
    protocol_pipe: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_common, "HITS", None)
    _common.hit(1)
    assert _pending_lines(protocol_pipe) == []


def test_module_hit_with_a_counter_counts_it(
    protocol_pipe: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other half of the no-op test: the same call with a counter set is seen on the pipe
    (so an empty pipe above means that nothing was written, not that nothing could be read)."""
    hits = _common.Hits([1], record=True)
    monkeypatch.setattr(_common, "HITS", hits)
    _common.hit(1)
    assert hits.count == 1
    assert [e["event"] for e in _pending_lines(protocol_pipe)] == ["hit", "mark"]
