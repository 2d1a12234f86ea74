"""``limit_key``: an option checked at the edge, a record field through the one encoder
(``envelope``) and the one decoder (``ActivityRecord.from_doc``)."""

from __future__ import annotations

import pytest

from runnerq import ActivityOption, ConfigurationError
from runnerq.prepare import ActivityIds, BulkEntries, prepare
from runnerq.record import RECORD_FIELDS, ActivityRecord, CorruptRecordError, encode_record


def test_a_limit_key_is_carried_in_the_record() -> None:
    options = ActivityOption(limit_key="tenant-7")
    item = prepare(ActivityIds(), "t", {"x": 1}, options, 1 << 20)
    record = ActivityRecord.decode(item.record_json)
    assert record.limit_key == "tenant-7"
    assert ActivityRecord.decode(record.encode()) == record
    assert ActivityRecord.decode(record.retried("e").encode()).limit_key == "tenant-7"
    assert "limit_key" in RECORD_FIELDS
    [batch] = BulkEntries(ActivityIds(), [("t", 1, options), ("t", 2)], 1 << 20).batches(10)
    assert [ActivityRecord.decode(i.record_json).limit_key for i in batch] == ["tenant-7", None]


def test_no_limit_key_writes_no_field() -> None:
    text = encode_record("a1", "t", 1, ActivityOption(), 5.0, 1 << 20)
    assert text == '{"id":"a1","type":"t","priority":"normal","created_at":5.0,"payload":1}'
    assert ActivityRecord.decode(text).limit_key is None


@pytest.mark.parametrize("key", ["", "a\tb", "x" * 201, 5])
def test_a_bad_limit_key_is_refused(key: object) -> None:
    with pytest.raises(ConfigurationError, match="limit_key must be a string of 1-200"):
        ActivityOption(limit_key=key)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", 3, ["k"]])
def test_a_stored_limit_key_that_is_not_a_string_is_corrupt(value: object) -> None:
    doc = {"id": "a", "type": "t", "payload": 1, "limit_key": value}
    with pytest.raises(CorruptRecordError, match="'limit_key' must be a non-empty string"):
        ActivityRecord.from_doc(doc)
