"""Decoding a stored record is strict: anything runnerq's encoder could not have written is
corrupt, with a message that says what is wrong; everything it writes reads back the same."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runnerq.priority import ActivityPriority
from runnerq.record import RECORD_FIELDS, ActivityRecord, CorruptRecordError, DeadLetterEntry
from tests.support.strategies import json_values

GOOD = '{"id":"a","type":"t","created_at":5.0,"payload":1}'


def _with(**fields: Any) -> str:
    doc: dict[str, Any] = {"id": "a", "type": "t", "created_at": 5.0, "payload": 1}
    doc.update(fields)
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"id":"a","type":"t","payload":NaN}', "NaN is not JSON"),
        ('{"id":"a","type":"t","payload":[Infinity]}', "Infinity is not JSON"),
        ('{"id":"a","type":"t","payload":{"x":-Infinity}}', "-Infinity is not JSON"),
        ('{"id":"a","type":"t","metadata":{"m":NaN},"payload":1}', "NaN is not JSON"),
        ('{"id":"a","type":"t","payload":1,"payload":2}', "duplicate key 'payload'"),
        ('{"id":"a","type":"t","payload":{"k":1,"k":2}}', "duplicate key 'k'"),
        ('{"id":"a","type":"t","payload":1}{"x":1}', "extra data"),
        ('{"id":"a","type":"t","payload":1} x', "extra data"),
        ('{"id":"a","type":"t","payload":"\\udcff"}', "lone surrogate"),
        ("[1, 2]", "a JSON array, not an object"),
        ("null", "a JSON null, not an object"),
        ("", "is not JSON"),
        ("{", "is not JSON"),
        ('{"type":"t","payload":1}', "no 'id' field"),
        ('{"id":"a","payload":1}', "no 'type' field"),
        ('{"id":"a","type":"t"}', "no 'payload' field"),
        (_with(id=""), "'id' must be a non-empty string"),
        (_with(id=7), "'id' must be a non-empty string"),
        (_with(type=["t"]), "'type' must be a non-empty string"),
        (_with(priority="urgent"), "'priority' must be one of"),
        (_with(priority=["high"]), "'priority' must be one of"),
        (_with(max_retries=-1), "'max_retries' must be a whole number"),
        (_with(max_retries=2.5), "'max_retries' must be a whole number"),
        (_with(max_retries=True), "'max_retries' must be a whole number"),
        (_with(timeout="60"), "'timeout' must be a number >= 0"),
        (_with(timeout=-1), "'timeout' must be a number >= 0"),
        (_with(retry_count="1"), "'retry_count' must be a whole number"),
        (_with(metadata=[1]), "'metadata' must be an object"),
        (_with(idempotency_key=5), "'idempotency_key' must be a string"),
        (_with(last_error={"e": 1}), "'last_error' must be a string"),
        (_with(ready_at="soon"), "'ready_at' must be a number >= 0"),
        (_with(ready_at=True), "'ready_at' must be a number >= 0"),
        (_with(created_at=-3), "'created_at' must be a number >= 0"),
        (_with(created_at=1e400), "Infinity"),  # 1e400 is written as Infinity by json.dumps
    ],
)
def test_corrupt_records_are_refused_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(CorruptRecordError, match=message.replace("[", r"\[")):
        ActivityRecord.decode(raw)


def test_bytes_that_are_not_utf8_are_corrupt() -> None:
    with pytest.raises(CorruptRecordError, match="not valid UTF-8"):
        ActivityRecord.decode(b'{"id":"a","type":"t","payload":"\xff"}')
    # As the connections decode them (surrogateescape): a lone surrogate in the text.
    text = b'{"id":"a","type":"t","payload":"\xff"}'.decode("utf-8", "surrogateescape")
    with pytest.raises(CorruptRecordError, match="not valid UTF-8"):
        ActivityRecord.decode(text)


def test_what_is_fine() -> None:
    assert ActivityRecord.decode(GOOD).payload == 1
    assert ActivityRecord.decode("  " + GOOD + "\n").id == "a"  # whitespace around it
    surrogate_pair = '{"id":"a","type":"t","payload":"\\ud83d\\ude00"}'
    assert ActivityRecord.decode(surrogate_pair).payload == "\U0001f600"
    unknown = ActivityRecord.decode(_with(added_by_a_newer_client={"x": 1}))
    assert unknown.id == "a"  # fields it does not know are ignored
    assert ActivityRecord.decode(_with(timeout=3, created_at=7)).timeout == 3.0


_json = json_values()
_finite = st.floats(min_value=0, max_value=4e9)


@given(
    record=st.builds(
        ActivityRecord,
        id=st.text(min_size=1, max_size=20),
        activity_type=st.text(min_size=1, max_size=20),
        payload=_json,
        priority=st.sampled_from(list(ActivityPriority)),
        max_retries=st.none() | st.integers(0, 10**6),
        timeout=st.none() | _finite,
        retry_count=st.integers(0, 100),
        metadata=st.dictionaries(st.text(max_size=5), _json, max_size=3),
        created_at=_finite,
        idempotency_key=st.none() | st.text(max_size=10),
        last_error=st.none() | st.text(max_size=30),
        ready_at=st.none() | _finite,
    )
)
def test_what_the_encoder_writes_reads_back_the_same(record: ActivityRecord) -> None:
    text = record.encode()
    assert ActivityRecord.decode(text) == record
    assert list(json.loads(text)) == [f for f in RECORD_FIELDS if f in json.loads(text)]


def test_a_dead_letter_entry_with_a_corrupt_record_keeps_its_text() -> None:
    entry = DeadLetterEntry("a", "boom", "corrupt", 1.0, None, '{"payload":NaN}')
    back = DeadLetterEntry.decode("a", entry.encode())
    assert (back.record, back.raw, back.reason) == (None, '{"payload":NaN}', "corrupt")
