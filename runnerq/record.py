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
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import SerializationError
from .options import ActivityOption
from .priority import ActivityPriority

__all__ = [
    "RECORD_FIELDS",
    "ActivityRecord",
    "CorruptRecordError",
    "DeadLetterEntry",
    "ResultDocument",
    "encode_json",
    "encode_payload",
    "encode_record",
    "envelope",
    "parse_strict_json",
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


def readable(text: str) -> str:
    """``text`` with what was not UTF-8 in Redis (lone surrogates) as replacement characters:
    a corrupt record's text, kept in its dead-letter entry for people to read."""
    if text.isascii() or _is_unicode(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _is_unicode(text: str) -> bool:
    """No lone surrogates: the text can be written as UTF-8. (Bytes read from Redis that
    are not UTF-8 arrive as lone surrogates: the connections decode with surrogateescape.)"""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def encode_json(value: Any, what: str, limit: int | None = None) -> str:
    """Compact JSON for ``value``, or a ``SerializationError`` that names ``what`` failed."""
    try:
        text = _dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"{what} is not JSON-serializable: {exc}") from exc
    if not text.isascii() and not _is_unicode(text):
        raise SerializationError(
            f"{what} is not JSON-serializable: it holds a lone surrogate (not valid Unicode)"
        )
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
    """What a new record holds between its id and its payload's JSON (see ``envelope``).

    The same for every activity of a bulk enqueue that shares a type and options, so it is
    made once for all of them."""
    # When a scheduled activity becomes due: its queue wait is counted from then.
    ready_at = None
    if options.delay:
        ready_at = created_at + options.delay
    elif options.run_at is not None:
        due = options.run_at.timestamp()
        if due > created_at:  # (a time in the past is now)
            ready_at = due
    return envelope(
        activity_type,
        options.priority,
        options.max_retries,
        options.timeout,
        0,
        options.metadata,
        options.idempotency_key,
        None,
        ready_at,
        created_at,
        options.limit_key,
    )


# The record's fields, in the order they are written. ``envelope`` writes them and
# ``ActivityRecord.from_doc`` reads them: the one encoder and the one decoder of the format.
# Fields at their defaults are left out (half the bytes of a typical record, in Redis and on
# every claim) and read back as their defaults; keys a reader does not know are ignored, so
# an older worker can run a record that a newer client wrote.
RECORD_FIELDS = (
    "id",
    "type",
    "priority",
    "max_retries",
    "timeout",
    "retry_count",
    "metadata",
    "idempotency_key",
    "last_error",
    "ready_at",
    "created_at",
    "limit_key",
    "payload",
)


def envelope(
    activity_type: str,
    priority: ActivityPriority,
    max_retries: int | None,
    timeout: float | None,
    retry_count: int,
    metadata: dict[str, Any] | None,
    idempotency_key: str | None,
    last_error: str | None,
    ready_at: float | None,
    created_at: float,
    limit_key: str | None = None,
) -> str:
    """A record's fields between its id and its payload, from ``,"type":`` to
    ``"payload":``: a record is ``'{"id":' + id JSON + envelope + payload JSON + '}'``.

    The one encoder of the record format (``ActivityRecord.encode`` and every enqueue use
    it). Built by hand, on the path of every enqueue: strings go through the encoder,
    numbers are checked finite floats or ints, whose ``repr`` is their JSON."""
    type_json = _type_json.get(activity_type)
    if type_json is None:
        type_json = _dumps(activity_type)
        if len(_type_json) < 1024:
            _type_json[activity_type] = type_json
    # ``_value_``: ``value`` is a property, two Python calls on every enqueue.
    text = f',"type":{type_json},"priority":"{priority._value_}"'
    if max_retries is not None:
        text += f',"max_retries":{_dumps(max_retries)}'
    if timeout is not None:
        text += f',"timeout":{_dumps(timeout)}'
    if retry_count:
        text += f',"retry_count":{_dumps(retry_count)}'
    if metadata:
        text += f',"metadata":{encode_json(metadata, "metadata")}'
    if idempotency_key is not None:
        text += f',"idempotency_key":{_dumps(idempotency_key)}'
    if last_error is not None:
        text += f',"last_error":{encode_json(last_error, "the last error")}'
    if ready_at is not None:
        text += f',"ready_at":{float(ready_at)!r}'
    if limit_key is None:
        return f'{text},"created_at":{float(created_at)!r},"payload":'
    return f'{text},"created_at":{float(created_at)!r},"limit_key":{_dumps(limit_key)},"payload":'


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
    # What the queue's per-key limits count it against (docs/limits.md).
    limit_key: str | None = None

    def encode(self, payload_json: str | None = None) -> str:
        """The record's JSON. Pass ``payload_json`` when the payload is already encoded."""
        if payload_json is None:
            payload_json = encode_json(self.payload, "payload")
        middle = envelope(
            self.activity_type,
            self.priority,
            self.max_retries,
            self.timeout,
            self.retry_count,
            self.metadata,
            self.idempotency_key,
            self.last_error,
            self.ready_at,
            self.created_at,
            self.limit_key,
        )
        return f'{{"id":{_dumps(self.id)}{middle}{payload_json}}}'

    @classmethod
    def decode(cls, raw: str | bytes) -> ActivityRecord:
        """Parse a stored record, or raise ``CorruptRecordError`` saying what is wrong.

        Strict: text that is not UTF-8, ``NaN`` and ``Infinity``, duplicate keys, trailing
        data, a missing field or one of the wrong type make a record corrupt (runnerq's
        encoder writes none of these; a record that has them was written by something else
        and would fail later, when the worker writes its outcome)."""
        return cls.from_doc(parse_strict_json(raw, "record"))

    @classmethod
    def from_doc(cls, doc: Any) -> ActivityRecord:
        """The record in a parsed JSON document (see ``RECORD_FIELDS``), checked field by
        field; ``CorruptRecordError`` names the first field that is wrong."""
        if type(doc) is not dict:
            raise CorruptRecordError(f"record is a JSON {_json_kind(doc)}, not an object")
        get = doc.get
        activity_id = get("id")
        activity_type = get("type")
        priority = get("priority", "normal")
        priority = _PRIORITIES.get(priority) if type(priority) is str else None
        max_retries = get("max_retries")
        timeout = get("timeout")
        retry_count = get("retry_count", 0)
        metadata = get("metadata")
        idem = get("idempotency_key")
        last_error = get("last_error")
        ready_at = get("ready_at")
        created_at = get("created_at", 0.0)
        limit_key = get("limit_key")
        if (
            type(activity_id) is not str
            or not activity_id
            or type(activity_type) is not str
            or not activity_type
            or priority is None
            or "payload" not in doc
            or not (max_retries is None or (type(max_retries) is int and max_retries >= 0))
            or not (timeout is None or _non_negative(timeout))
            or type(retry_count) is not int
            or retry_count < 0
            or not (metadata is None or type(metadata) is dict)
            or not (idem is None or type(idem) is str)
            or not (last_error is None or type(last_error) is str)
            or not (ready_at is None or _non_negative(ready_at))
            or not _non_negative(created_at)
            or not (limit_key is None or (type(limit_key) is str and limit_key))
        ):
            raise CorruptRecordError(_what_is_wrong(doc))
        return cls(
            id=activity_id,
            activity_type=activity_type,
            payload=doc["payload"],
            priority=priority,
            max_retries=max_retries,
            timeout=None if timeout is None else float(timeout),
            retry_count=retry_count,
            metadata={} if metadata is None else metadata,
            created_at=float(created_at),
            idempotency_key=idem,
            last_error=last_error,
            ready_at=None if ready_at is None else float(ready_at),
            limit_key=limit_key,
        )

    def retried(self, error: str) -> ActivityRecord:
        return replace(self, retry_count=self.retry_count + 1, last_error=error)


_PRIORITIES = {p.value: p for p in ActivityPriority}


def _non_negative(value: Any) -> bool:
    """A finite JSON number >= 0 (not a boolean)."""
    kind = type(value)
    return (kind is float and 0 <= value < math.inf) or (kind is int and value >= 0)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return kinds.get(type(value), "object")


# What each field must be: (name, check, what it must be). Only read to explain a record
# that ``from_doc`` refused, so it may be slow.
_FIELD_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("id", lambda v: type(v) is str and bool(v), "a non-empty string"),
    ("type", lambda v: type(v) is str and bool(v), "a non-empty string"),
    ("priority", lambda v: v in _PRIORITIES, f"one of {', '.join(_PRIORITIES)}"),
    ("max_retries", lambda v: type(v) is int and v >= 0, "a whole number >= 0"),
    ("timeout", _non_negative, "a number >= 0"),
    ("retry_count", lambda v: type(v) is int and v >= 0, "a whole number >= 0"),
    ("metadata", lambda v: type(v) is dict, "an object"),
    ("idempotency_key", lambda v: type(v) is str, "a string"),
    ("last_error", lambda v: type(v) is str, "a string"),
    ("ready_at", _non_negative, "a number >= 0"),
    ("created_at", _non_negative, "a number >= 0"),
    ("limit_key", lambda v: type(v) is str and bool(v), "a non-empty string"),
)
_REQUIRED = ("id", "type", "payload")


def _what_is_wrong(doc: dict[str, Any]) -> str:
    for name in _REQUIRED:
        if name not in doc:
            return f"record has no {name!r} field"
    for name, check, what in _FIELD_RULES:
        value = doc.get(name)
        if value is None and name not in _REQUIRED:
            continue
        try:
            ok = check(value)
        except TypeError:  # an unhashable priority
            ok = False
        if not ok:
            shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."
            return f"record field {name!r} must be {what}, not {shown}"
    return "record is not valid"  # pragma: no cover - from_doc and the rules agree


class _DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _DuplicateKeyError(f"duplicate key {key!r}")
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Strict JSON: NaN, Infinity and -Infinity, and duplicate keys in any object, are refused.
_strict = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_unique_keys)
_scan = _strict.scan_once  # type: ignore[attr-defined]
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def parse_strict_json(raw: str | bytes, what: str) -> Any:
    """The JSON value in ``raw``, or ``CorruptRecordError`` saying why it is not strict JSON
    (see ``ActivityRecord.decode``)."""
    if type(raw) is bytes:
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise CorruptRecordError(f"{what} is not valid UTF-8") from None
    text: str = raw  # type: ignore[assignment]
    if not text.isascii() and not _is_unicode(text):
        raise CorruptRecordError(f"{what} is not valid UTF-8")
    try:
        doc, end = _scan(text, 0)
    except StopIteration:  # nothing that starts a JSON value at 0 (or leading spaces)
        doc, end = _slow_parse(text, what), len(text)
    except _DuplicateKeyError as exc:
        raise CorruptRecordError(f"{what} is not JSON: {exc}") from None
    except ValueError:
        doc, end = _slow_parse(text, what), len(text)
    if end != len(text) and text[end:].strip(" \t\n\r"):
        raise CorruptRecordError(f"{what} is not JSON: extra data at character {end}")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and not _is_unicode(_dumps(doc)):
        raise CorruptRecordError(f"{what} holds a lone surrogate escape (not valid Unicode)")
    return doc


def _slow_parse(text: str, what: str) -> Any:
    """The whole-text parse, for its error message (or leading whitespace)."""
    try:
        return _strict.decode(text)
    except _DuplicateKeyError as exc:
        raise CorruptRecordError(f"{what} is not JSON: {exc}") from None
    except ValueError as exc:
        raise CorruptRecordError(f"{what} is not JSON: {exc}") from None


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
    def completed_json(result_json: str, lease: str | None = None) -> str:
        """``lease``: the token of the lease it completed under (the claim's worker and time,
        for the activity's history: docs/history.md)."""
        if lease is None:
            return f'{{"status":"completed","result":{result_json}}}'
        if lease.isascii() and lease.isprintable() and '"' not in lease and "\\" not in lease:
            quoted = f'"{lease}"'  # what json.dumps gives for it, at a third of the cost
        else:
            quoted = json.dumps(lease)
        return f'{{"status":"completed","lease":{quoted},"result":{result_json}}}'

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
                "raw": None if self.raw is None else readable(self.raw),
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
                record = ActivityRecord.from_doc(doc["record"])
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
