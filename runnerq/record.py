"""The stored activity record and the documents kept beside it, and their JSON form.

An ``ActivityRecord`` is what Redis holds for an activity that has not finished. It is a
plain value with no I/O (the live handle is ``ActivityFuture``); treat it as immutable
(``retried`` makes a changed copy). It is not frozen: a frozen dataclass costs a second
per-field ``object.__setattr__`` on the path of every activity a worker runs. Everything stored is
JSON: never pickle, since whoever can write to Redis could then run code in every worker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import SerializationError
from .options import ActivityOption
from .priority import ActivityPriority

__all__ = [
    "ActivityRecord",
    "CorruptRecordError",
    "DeadLetterEntry",
    "ResultDocument",
    "encode_json",
    "encode_payload",
    "encode_record",
    "record_middle",
]

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _one_shot_encoder() -> Callable[[Any], str]:
    """``_encoder.encode`` without its per-call set-up: ``JSONEncoder.encode`` builds a new C
    encoder on every call, which costs more than encoding a small payload. Built once here,
    with no circular-reference table (a table shared between calls could keep stale entries
    after an error); a circular value fails with RecursionError instead, caught by callers."""
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # no C accelerator: the plain encoder
        return _encoder.encode
    try:
        iterencode = make(None, _not_json, basestring, None, ":", ",", False, False, False)
    except TypeError:  # another Python's private signature: the plain encoder
        return _encoder.encode

    def encode(value: Any) -> str:
        if type(value) is str:
            return basestring(value)  # type: ignore[no-any-return]
        return "".join(iterencode(value, 0))

    return encode


_dumps = _one_shot_encoder()


class CorruptRecordError(ValueError):
    """Text from Redis that is not a valid activity record."""


def encode_json(value: Any, what: str, limit: int | None = None) -> str:
    """Compact JSON for ``value``, or a ``SerializationError`` that names ``what`` failed."""
    try:
        text = _dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"{what} is not JSON-serializable: {exc}") from exc
    # A character is at most 4 bytes in UTF-8: only long texts need the exact byte count.
    if limit is not None and len(text) * 4 > limit and len(text.encode()) > limit:
        raise SerializationError(
            f"{what} is {len(text.encode())} bytes of JSON, over the limit of {limit} bytes"
        )
    return text


def encode_record(
    activity_id: str,
    activity_type: str,
    payload: Any,
    options: ActivityOption,
    created_at: float,
    max_payload_bytes: int,
) -> str:
    """A new activity's record JSON, the same text as ``ActivityRecord(...).encode()``;
    raises ``SerializationError`` for a payload that is not JSON or too big.

    The hot path of every enqueue: only the payload goes through the encoder, the envelope is
    put together from pieces that are cheap to get right (see ``record_middle``)."""
    payload_json = encode_payload(payload, max_payload_bytes)
    middle = record_middle(activity_type, options, created_at)
    # Ids runnerq makes are hex: letters and digits need no escaping.
    id_json = f'"{activity_id}"' if activity_id.isalnum() else _dumps(activity_id)
    return f'{{"id":{id_json}{middle}{payload_json}}}'


def encode_payload(payload: Any, max_payload_bytes: int) -> str:
    """A payload's JSON, or ``SerializationError`` (not JSON, or over the size limit)."""
    payload_json = encode_json(payload, "payload")
    if len(payload_json) * 4 > max_payload_bytes:
        encode_json(payload, "payload", max_payload_bytes)  # raises when over the limit
    return payload_json


def record_middle(activity_type: str, options: ActivityOption, created_at: float) -> str:
    """What a new record holds between its id and its payload's JSON, from ``,"type":`` to
    ``"payload":``: a record is ``'{"id":' + id JSON + middle + payload JSON + '}'``.

    The same for every activity of a bulk enqueue that shares a type and options, so it is
    made once for all of them. Built by hand: the type and priority are checked strings,
    ``created_at`` is a finite float, whose ``repr`` is its JSON."""
    type_json = _type_json.get(activity_type)
    if type_json is None:
        type_json = _dumps(activity_type)
        if len(_type_json) < 1024:
            _type_json[activity_type] = type_json
    optional = ""
    if options.max_retries is not None:
        optional += f',"max_retries":{_dumps(options.max_retries)}'
    if options.timeout is not None:
        optional += f',"timeout":{_dumps(options.timeout)}'
    if options.metadata:
        optional += f',"metadata":{encode_json(options.metadata, "metadata")}'
    if options.idempotency_key is not None:
        optional += f',"idempotency_key":{_dumps(options.idempotency_key)}'
    # When a scheduled activity becomes due: its queue wait is counted from then.
    if options.delay:
        optional += f',"ready_at":{float(created_at + options.delay)!r}'
    elif options.run_at is not None:
        due = options.run_at.timestamp()
        if due > created_at:  # (a time in the past is now)
            optional += f',"ready_at":{float(due)!r}'
    return (
        # ``_value_``: ``value`` is a property, two Python calls on every enqueue.
        f',"type":{type_json},"priority":"{options.priority._value_}"{optional},'
        f'"created_at":{float(created_at)!r},"payload":'
    )


_type_json: dict[str, str] = {}  # activity type -> its JSON string (types are few)


@dataclass(slots=True)
class ActivityRecord:
    """One activity as stored in Redis while it is pending, scheduled, running or retrying.

    ``max_retries`` and ``timeout`` of ``None`` mean "the queue's default", resolved by the
    worker when it runs the activity, so that the operator can change defaults later.
    """

    id: str
    activity_type: str
    payload: Any
    priority: ActivityPriority = ActivityPriority.NORMAL
    max_retries: int | None = None
    timeout: float | None = None
    retry_count: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    idempotency_key: str | None = None
    last_error: str | None = None
    # When it became ready to run, if not when it was created (a due time, a requeue from
    # the dead-letter queue): its queue wait is counted from the later of the two.
    ready_at: float | None = None

    def encode(self, payload_json: str | None = None) -> str:
        """The record's JSON. Pass ``payload_json`` when the payload is already encoded."""
        if payload_json is None:
            payload_json = encode_json(self.payload, "payload")
        envelope: dict[str, Any] = {
            "id": self.id,
            "type": self.activity_type,
            "priority": self.priority.value,
        }
        # Fields at their defaults are left out: half the bytes of a typical record, in Redis
        # and on every claim. Readers take a missing field as its default.
        if self.max_retries is not None:
            envelope["max_retries"] = self.max_retries
        if self.timeout is not None:
            envelope["timeout"] = self.timeout
        if self.retry_count:
            envelope["retry_count"] = self.retry_count
        if self.metadata:
            envelope["metadata"] = self.metadata
        if self.idempotency_key is not None:
            envelope["idempotency_key"] = self.idempotency_key
        if self.last_error is not None:
            envelope["last_error"] = self.last_error
        if self.ready_at is not None:
            envelope["ready_at"] = self.ready_at
        envelope["created_at"] = self.created_at
        head = encode_json(envelope, "activity metadata")
        return f'{head[:-1]},"payload":{payload_json}}}'

    @classmethod
    def decode(cls, raw: str | bytes) -> ActivityRecord:
        """Parse a stored record, or raise ``CorruptRecordError`` saying what is wrong."""
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptRecordError(f"record is not JSON: {exc}") from None
        fast = _decode_well_formed(cls, doc)
        return fast if fast is not None else cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> ActivityRecord:
        if not isinstance(doc, dict):
            raise CorruptRecordError(f"record is a JSON {type(doc).__name__}, not an object")
        try:
            activity_id = doc["id"]
            activity_type = doc["type"]
            payload = doc["payload"]
        except KeyError as exc:
            raise CorruptRecordError(f"record has no {exc.args[0]!r} field") from None
        if not isinstance(activity_id, str) or not activity_id:
            raise CorruptRecordError("record field 'id' must be a non-empty string")
        if not isinstance(activity_type, str) or not activity_type:
            raise CorruptRecordError("record field 'type' must be a non-empty string")
        try:
            priority = ActivityPriority.parse(doc.get("priority", "normal"))
        except (ValueError, AttributeError) as exc:
            raise CorruptRecordError(f"record field 'priority': {exc}") from None
        max_retries = _optional(doc, "max_retries", int)
        timeout = _optional(doc, "timeout", float)
        retry_count = _optional(doc, "retry_count", int) or 0
        metadata = doc.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise CorruptRecordError("record field 'metadata' must be an object")
        created_at = _optional(doc, "created_at", float) or 0.0
        try:
            ready_at = _optional(doc, "ready_at", float)
        except CorruptRecordError:  # only the queue-wait metric reads it: not worth a record
            ready_at = None
        idem = doc.get("idempotency_key")
        last_error = doc.get("last_error")
        return cls(
            id=activity_id,
            activity_type=activity_type,
            payload=payload,
            priority=priority,
            max_retries=int(max_retries) if max_retries is not None else None,
            timeout=float(timeout) if timeout is not None else None,
            retry_count=int(retry_count),
            metadata=metadata,
            created_at=float(created_at),
            idempotency_key=idem if isinstance(idem, str) else None,
            last_error=last_error if isinstance(last_error, str) else None,
            ready_at=float(ready_at) if ready_at is not None else None,
        )

    def retried(self, error: str) -> ActivityRecord:
        return replace(self, retry_count=self.retry_count + 1, last_error=error)


_PRIORITIES = {p.value: p for p in ActivityPriority}


def _decode_well_formed(cls: type[ActivityRecord], doc: Any) -> ActivityRecord | None:
    """The hot path for records runnerq wrote itself; ``None`` sends anything unusual to
    ``from_dict``, which validates field by field and says what is wrong."""
    if type(doc) is not dict:
        return None
    get = doc.get
    try:
        activity_id = doc["id"]
        activity_type = doc["type"]
        priority = _PRIORITIES[get("priority", "normal")]
        payload = doc["payload"]
    except (KeyError, TypeError):
        return None
    max_retries = get("max_retries")
    timeout = get("timeout")
    retry_count = get("retry_count", 0)
    metadata = get("metadata")
    if metadata is None:
        metadata = {}
    created_at = get("created_at", 0.0)
    ready_at = get("ready_at")
    idem = get("idempotency_key")
    last_error = get("last_error")
    if (
        type(activity_id) is not str
        or not activity_id
        or type(activity_type) is not str
        or not activity_type
        or not (max_retries is None or (type(max_retries) is int and max_retries >= 0))
        or not (timeout is None or (type(timeout) in (int, float) and 0 <= timeout < math.inf))
        or type(retry_count) is not int
        or retry_count < 0
        or type(metadata) is not dict
        or type(created_at) not in (int, float)
        or not (ready_at is None or (type(ready_at) in (int, float) and 0 <= ready_at < math.inf))
        or not (idem is None or type(idem) is str)
        or not (last_error is None or type(last_error) is str)
    ):
        return None
    return cls(
        id=activity_id,
        activity_type=activity_type,
        payload=payload,
        priority=priority,
        max_retries=max_retries,
        timeout=None if timeout is None else float(timeout),
        retry_count=retry_count,
        metadata=metadata,
        created_at=float(created_at),
        idempotency_key=idem,
        last_error=last_error,
        ready_at=None if ready_at is None else float(ready_at),
    )


def _optional(doc: dict[str, Any], name: str, kind: type[int] | type[float]) -> int | float | None:
    value = doc.get(name)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok or (isinstance(value, float) and not math.isfinite(value)) or value < 0:
        raise CorruptRecordError(
            f"record field {name!r} must be a non-negative number, not {value!r}"
        )
    return float(value) if kind is float else int(value)


@dataclass(frozen=True, slots=True)
class ResultDocument:
    """An activity's terminal state, stored under its result key with a TTL.

    ``status`` is ``completed`` (``result`` holds the handler's value), ``dead_lettered``
    (``error`` and ``reason``) or ``cancelled``.
    """

    status: str
    result: Any = None
    error: str | None = None
    reason: str | None = None

    @staticmethod
    def completed_json(result_json: str) -> str:
        return f'{{"status":"completed","result":{result_json}}}'

    @staticmethod
    def dead_lettered_json(error: str, reason: str) -> str:
        return encode_json({"status": "dead_lettered", "error": error, "reason": reason}, "error")

    @staticmethod
    def cancelled_json() -> str:
        return '{"status":"cancelled"}'

    @classmethod
    def decode(cls, raw: str | bytes) -> ResultDocument:
        try:
            doc = json.loads(raw)
            status = doc["status"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return cls(status="dead_lettered", error="stored result is corrupt", reason="corrupt")
        return cls(
            status=str(status),
            result=doc.get("result"),
            error=doc.get("error"),
            reason=doc.get("reason"),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """What the dead-letter queue keeps for an activity: its record (or the raw text when the
    record was corrupt), the last error, why it was dead-lettered, and when (epoch seconds).
    """

    id: str
    error: str
    reason: str
    failed_at: float
    record: ActivityRecord | None = None
    raw: str | None = None

    def encode(self) -> str:
        record = self.record.encode() if self.record is not None else "null"
        head = encode_json(
            {
                "id": self.id,
                "error": self.error,
                "reason": self.reason,
                "failed_at": self.failed_at,
                "raw": self.raw,
            },
            "dead-letter entry",
        )
        return f'{head[:-1]},"record":{record}}}'

    @classmethod
    def decode(cls, activity_id: str, raw: str | bytes) -> DeadLetterEntry:
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            return cls(activity_id, "dead-letter entry is corrupt", "corrupt", 0.0, None, text)
        record = None
        if doc.get("record") is not None:
            try:
                record = ActivityRecord.from_dict(doc["record"])
            except CorruptRecordError:
                record = None
        return cls(
            id=activity_id,
            error=str(doc.get("error", "")),
            reason=str(doc.get("reason", "failed")),
            failed_at=float(doc.get("failed_at") or 0.0),
            record=record,
            raw=doc.get("raw"),
        )
