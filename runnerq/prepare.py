"""Activities made ready for the enqueue script: checked, given an id, their records encoded.

The client's hot path. One activity (``prepare``) costs one JSON encode of its payload; a
bulk enqueue (``BulkEntries``) works out what its entries share once (the record's envelope
and the script's head for each type and options object, one ``created_at``) and checks every
entry before anything is sent, then builds records a batch at a time while Redis runs the
batch before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import ConfigurationError
from .options import ActivityOption
from .record import encode_payload, encode_record, record_middle
from .store import EnqueueItem, enqueue_head

__all__ = ["NO_OPTIONS", "ActivityIds", "BulkEntries", "Entry", "check_type", "prepare"]

Entry = tuple[str, Any] | tuple[str, Any, ActivityOption | None]
NO_OPTIONS = ActivityOption()  # shared: options are immutable


class ActivityIds:
    """Activity ids of one client: a random prefix and a counter, as unique as a UUID4 and far
    cheaper to make. Ids are hex, so a record can quote them without escaping."""

    def __init__(self) -> None:
        self.prefix = os.urandom(10).hex()
        self._counter = int.from_bytes(os.urandom(3), "big") << 16

    def next(self) -> str:
        self._counter += 1
        return self.format(self._counter)

    def reserve(self, count: int) -> int:
        """Take ``count`` ids at once; returns the first one's number (``format`` makes it)."""
        first = self._counter + 1
        self._counter += count
        return first

    def format(self, number: int) -> str:
        return f"{self.prefix}{number:012x}"


def prepare(
    ids: ActivityIds,
    activity_type: str,
    payload: Any,
    options: ActivityOption,
    max_payload_bytes: int,
) -> EnqueueItem:
    """Check and encode one activity."""
    check_type(activity_type)
    activity_id = ids.next()
    record_json = encode_record(
        activity_id, activity_type, payload, options, time.time(), max_payload_bytes
    )
    return EnqueueItem(activity_id, _head(options), record_json, options.idempotency_key)


class BulkEntries:
    """The entries of one bulk enqueue, every one checked and its payload encoded when this is
    made (a bad one raises here, before anything is sent); ``batches`` makes the rest."""

    def __init__(self, ids: ActivityIds, entries: Iterable[Entry], max_payload_bytes: int):
        created_at = time.time()
        # (type, id(options)) -> (options, record middle, head); the options are kept so that
        # their id cannot be reused by another object while the entries are being read.
        shared: dict[tuple[str, int], tuple[ActivityOption, str, str]] = {}
        self._groups: list[tuple[ActivityOption, str, str]] = []
        self._payloads: list[str] = []
        group, payload_json = self._groups.append, self._payloads.append
        for entry in entries:
            activity_type, payload = entry[0], entry[1]
            options = (entry[2] if len(entry) > 2 else None) or NO_OPTIONS
            if type(activity_type) is not str or not activity_type:
                check_type(activity_type)
            found = shared.get((activity_type, id(options)))
            if found is None:
                middle = record_middle(activity_type, options, created_at)
                found = shared[activity_type, id(options)] = (options, middle, _head(options))
            group(found)
            payload_json(encode_payload(payload, max_payload_bytes))
        self._ids = ids
        self._first = ids.reserve(len(self._payloads))

    def __len__(self) -> int:
        return len(self._payloads)

    def ids(self) -> list[str]:
        return [self._ids.format(self._first + i) for i in range(len(self))]

    def batches(self, size: int) -> Iterator[list[EnqueueItem]]:
        """The entries as items, ``size`` at a time, each batch made when it is asked for."""
        make_id = self._ids.format
        for start in range(0, len(self), size):
            end = min(start + size, len(self))
            batch: list[EnqueueItem] = []
            append = batch.append
            numbers = range(self._first + start, self._first + end)
            for number, (options, middle, head), payload_json in zip(
                numbers, self._groups[start:end], self._payloads[start:end], strict=True
            ):
                activity_id = make_id(number)
                record_json = f'{{"id":"{activity_id}"{middle}{payload_json}}}'
                append(EnqueueItem(activity_id, head, record_json, options.idempotency_key))
            yield batch


def check_type(activity_type: object) -> None:
    if not isinstance(activity_type, str) or not activity_type:
        raise ConfigurationError(f"activity type must be a non-empty string, not {activity_type!r}")


def _head(options: ActivityOption) -> str:
    due_at = options.run_at.timestamp() if options.run_at is not None else None
    keyed = options.idempotency_key is not None
    return enqueue_head(options.priority, options.delay or 0.0, due_at, keyed, options.limit_key)
