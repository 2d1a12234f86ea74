"""``prepare`` and ``BulkEntries``: the records they build are what ``ActivityRecord``
encodes, every entry is checked before any batch is made, and ids never repeat."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from runnerq import ActivityOption, ActivityPriority, ConfigurationError, SerializationError
from runnerq.prepare import NO_OPTIONS, ActivityIds, BulkEntries, Entry, prepare
from runnerq.record import ActivityRecord
from runnerq.store import enqueue_head

LIMIT = 1 << 20


def _items(entries: list[Entry], size: int = 3) -> list[Any]:
    bulk = BulkEntries(ActivityIds(), entries, LIMIT)
    return [item for batch in bulk.batches(size) for item in batch]


def test_bulk_records_are_what_the_record_encodes() -> None:
    later = ActivityOption(delay=5, max_retries=2, metadata={"m": [1, "ü"]})
    keyed = ActivityOption(idempotency_key="k", priority=ActivityPriority.CRITICAL, timeout=3.5)
    at = ActivityOption(run_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    entries: list[Entry] = [
        ("a", {"x": 1}),
        ("a", None, later),
        ("b", "text ✓", keyed),
        ("a", [1, 2], None),
        ("c", 7, at),
    ]
    items = _items(entries)
    stamps = {ActivityRecord.decode(item.record_json).created_at for item in items}
    assert len(stamps) == 1  # one moment for the whole call
    (created_at,) = stamps
    for entry, item in zip(entries, items, strict=True):
        options = (entry[2] if len(entry) > 2 else None) or NO_OPTIONS
        expected = ActivityRecord(
            id=item.id,
            activity_type=entry[0],
            payload=entry[1],
            priority=options.priority,
            max_retries=options.max_retries,
            timeout=options.timeout,
            metadata=options.metadata,
            created_at=created_at,
            idempotency_key=options.idempotency_key,
            ready_at=(  # a scheduled one is ready when due
                created_at + options.delay
                if options.delay
                else options.run_at.timestamp()
                if options.run_at
                else None
            ),
        )
        assert item.record_json == expected.encode()
        assert item.idempotency_key == options.idempotency_key
        due_at = options.run_at.timestamp() if options.run_at else None
        keyed_ = options.idempotency_key is not None
        assert item.head == enqueue_head(options.priority, options.delay or 0, due_at, keyed_)


def test_batches_and_ids() -> None:
    ids = ActivityIds()
    bulk = BulkEntries(ids, [("t", i) for i in range(7)], LIMIT)
    batches = list(bulk.batches(3))
    assert [len(b) for b in batches] == [3, 3, 1]
    made = [item.id for batch in batches for item in batch]
    assert made == bulk.ids()
    assert len(set(made)) == 7 and all(i.isalnum() for i in made)
    # Ids reserved by the bulk are not handed out again.
    assert ids.next() not in made
    single = prepare(ids, "t", 1, NO_OPTIONS, LIMIT)
    assert single.id not in made


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (("t", {1, 2}), SerializationError),
        (("", 1), ConfigurationError),
        ((None, 1), ConfigurationError),
        (("t", 1, ActivityOption(metadata={"k": object()})), SerializationError),
        (("t", "x" * 2000), SerializationError),
    ],
)
def test_a_bad_entry_raises_before_any_batch(bad: Entry, error: type[Exception]) -> None:
    entries: list[Entry] = [("t", i) for i in range(5)]
    entries.insert(4, bad)
    with pytest.raises(error):
        BulkEntries(ActivityIds(), entries, 1000)


def test_an_empty_bulk_makes_no_batch() -> None:
    bulk = BulkEntries(ActivityIds(), [], LIMIT)
    assert len(bulk) == 0 and list(bulk.batches(10)) == []
