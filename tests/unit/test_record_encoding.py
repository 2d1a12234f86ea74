"""``encode_record`` (the enqueue hot path, which builds the envelope by hand) writes the same
text as ``ActivityRecord.encode`` and refuses what the encoder refuses."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runnerq import ActivityOption, SerializationError
from runnerq.priority import ActivityPriority
from runnerq.record import ActivityRecord, ResultDocument, _dumps, _encoder, encode_record
from tests.support.strategies import json_values

_json = json_values()


@given(
    activity_id=st.text(min_size=1, max_size=40),
    activity_type=st.text(min_size=1, max_size=20),
    payload=_json,
    priority=st.sampled_from(list(ActivityPriority)),
    max_retries=st.none() | st.integers(min_value=0, max_value=10**6),
    timeout=st.none() | st.floats(min_value=0.001, max_value=1e9),
    metadata=st.dictionaries(st.text(max_size=5), _json, max_size=3),
    created_at=st.floats(min_value=0, max_value=4e9),
    idempotency_key=st.none() | st.text(min_size=1, max_size=20),
    delay=st.none() | st.floats(min_value=0, max_value=1e9) | st.integers(0, 10**6),
)
def test_same_text_as_the_record_encoder(
    activity_id: str,
    activity_type: str,
    payload: Any,
    priority: ActivityPriority,
    max_retries: int | None,
    timeout: float | None,
    metadata: dict[str, Any],
    created_at: float,
    idempotency_key: str | None,
    delay: float | None,
) -> None:
    shared: dict[str, Any] = {
        "priority": priority,
        "max_retries": max_retries,
        "timeout": timeout,
        "metadata": metadata,
        "idempotency_key": idempotency_key,
    }
    options = ActivityOption(**shared, delay=delay)
    fast = encode_record(activity_id, activity_type, payload, options, created_at, 1 << 30)
    record = ActivityRecord(
        id=activity_id,
        activity_type=activity_type,
        payload=payload,
        created_at=created_at,
        ready_at=created_at + delay if delay else None,  # a delayed one is ready when due
        **shared,
    )
    assert fast == record.encode()
    assert ActivityRecord.decode(fast) == record
    json.loads(fast)


@pytest.mark.parametrize(
    ("payload", "metadata", "message"),
    [
        ({1, 2}, {}, "payload is not JSON-serializable"),
        (float("nan"), {}, "payload is not JSON-serializable"),
        ("x", {"k": object()}, "metadata is not JSON-serializable"),
        ("x" * 2000, {}, "over the limit of 1000 bytes"),
    ],
)
def test_refuses_what_cannot_be_stored(
    payload: Any, metadata: dict[str, Any], message: str
) -> None:
    with pytest.raises(SerializationError, match=message):
        encode_record("id", "t", payload, ActivityOption(metadata=metadata), 1.0, 1000)


@given(_json)
def test_the_one_shot_encoder_writes_what_the_json_module_writes(value: Any) -> None:
    assert _dumps(value) == _encoder.encode(value)


def test_a_run_at_in_the_past_writes_no_ready_at() -> None:
    past = ActivityOption(run_at=dt.datetime(1960, 1, 1, tzinfo=dt.UTC))
    record = ActivityRecord.decode(encode_record("a", "t", None, past, 1e9, 1 << 30))
    assert record.ready_at is None  # ready now: queue wait from created_at
    future = ActivityOption(run_at=dt.datetime(2040, 1, 1, tzinfo=dt.UTC))
    record = ActivityRecord.decode(encode_record("a", "t", None, future, 1e9, 1 << 30))
    assert record.ready_at == dt.datetime(2040, 1, 1, tzinfo=dt.UTC).timestamp()


@given(st.text())
def test_a_result_documents_lease_is_the_json_string_of_the_token(lease: str) -> None:
    """Plain tokens are quoted without json.dumps (the hot path); any other text is
    escaped by it: the document is the same either way."""
    doc = ResultDocument.completed_json("1", lease)
    assert json.loads(doc) == {"status": "completed", "lease": lease, "result": 1}
    assert doc == '{"status":"completed","lease":' + json.dumps(lease) + ',"result":1}'
