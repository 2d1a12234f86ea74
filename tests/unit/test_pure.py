"""Pure logic: no I/O."""

from __future__ import annotations

import ast
import datetime as dt
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

import runnerq
from runnerq import (
    ActivityError,
    ActivityOption,
    ActivityPriority,
    BackoffPolicy,
    ConfigurationError,
    DuplicateHandlerError,
    NonRetryableError,
    QueueSettings,
    RetryableError,
    SerializationError,
    WorkerEngine,
    WorkerSettings,
    non_retryable,
)
from runnerq.handler import HandlerRegistry
from runnerq.keys import QueueKeys
from runnerq.record import (
    ActivityRecord,
    CorruptRecordError,
    DeadLetterEntry,
    ResultDocument,
    encode_json,
)
from runnerq.scripts import SCRIPT_NAMES, script_source

PACKAGE = Path(runnerq.__file__).parent


def test_public_api_is_sorted_and_complete() -> None:
    assert runnerq.__all__ == sorted(runnerq.__all__)
    for name in runnerq.__all__:
        assert hasattr(runnerq, name), name


def test_library_never_imports_the_operator_or_kubernetes() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("kopf", "kubernetes", "runnerq_operator")), (
                    f"{path}: {name}"
                )


def test_priority_ranks_and_parse() -> None:
    # By name, not in the enum's order (which is how the ranks are made): a member moved in
    # the class, or a level added in the wrong place, changes which activity runs first.
    assert {p: p.rank for p in ActivityPriority} == {
        ActivityPriority.CRITICAL: 0,
        ActivityPriority.HIGH: 1,
        ActivityPriority.NORMAL: 2,
        ActivityPriority.LOW: 3,
    }
    assert ActivityPriority.parse("HIGH") is ActivityPriority.HIGH
    with pytest.raises(ValueError, match="unknown priority"):
        ActivityPriority.parse("urgent")


def test_lua_scripts_rank_priorities_as_python_does() -> None:
    """The scripts keep their own copy of the ranks (a requeue, reap or promotion scores a
    record by the priority in it): it must match ``ActivityPriority.rank``, and a record that
    cannot be read ranks as normal."""
    prelude = (PACKAGE / "scripts" / "_prelude.lua").read_text()
    table = re.search(r"^local RANKS = \{(.*)\}$", prelude, re.MULTILINE)
    assert table is not None
    lua = {k: int(v) for k, v in re.findall(r"(\w+) = (\d+)", table.group(1))}
    assert lua == {p.value: p.rank for p in ActivityPriority}
    rank_of = re.search(r"^local function rank_of\(record\)$(.*?)^end$", prelude, re.M | re.S)
    assert rank_of is not None
    assert set(re.findall(r"return (\d+)", rank_of.group(1))) == {str(ActivityPriority.NORMAL.rank)}


def test_keys_share_one_hash_tag() -> None:
    keys = QueueKeys("emails")
    assert keys.ready == "runnerq:{emails}:ready"
    tags = {
        re.findall(r"\{(.*?)\}", getattr(keys, f))[0]
        for f in ("jobs", "ready", "inflight", "dlq", "config")
    }
    assert tags == {"emails"}
    assert keys.result("abc") == "runnerq:{emails}:result:abc"
    for bad in ["", "a{b}", "has space", "x" * 201, "-leading"]:
        with pytest.raises(ConfigurationError):
            QueueKeys(bad)


def test_backoff_grows_caps_and_jitters() -> None:
    policy = BackoffPolicy(base=1, factor=2, cap=10, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.delay(10_000) == 10  # no overflow
    jittered = BackoffPolicy(base=4, factor=2, cap=100, jitter=0.5)
    rng = random.Random(1)
    samples = [jittered.delay(1, rng) for _ in range(500)]
    assert min(samples) >= 2.0
    assert max(samples) <= 4.0
    assert len({round(s, 3) for s in samples}) > 100
    with pytest.raises(ConfigurationError):
        BackoffPolicy(factor=0.5)
    with pytest.raises(ConfigurationError):
        BackoffPolicy(jitter=2)


def test_worker_settings_validation() -> None:
    with pytest.raises(ConfigurationError, match="heartbeat_interval"):
        WorkerSettings(lease_duration=5, heartbeat_interval=5)
    with pytest.raises(ConfigurationError):
        WorkerSettings(max_workers=0)
    with pytest.raises(ConfigurationError):
        QueueSettings(max_payload_bytes=0)
    with pytest.raises(ConfigurationError, match="claim_history"):
        QueueSettings(claim_history="no")  # type: ignore[arg-type]
    assert QueueSettings().claim_history is True
    with pytest.raises(TypeError):
        WorkerEngine(unknown_setting=1)  # type: ignore[call-arg]
    engine = WorkerEngine()
    assert (engine.redis_url, engine.queue_name) == ("redis://127.0.0.1:6379", "default")
    assert engine.worker_settings.max_workers == 10
    assert engine.worker_settings.schedule_poll_interval == 5.0
    with pytest.raises(ConfigurationError, match="unknown engine setting"):
        engine.configure(colour="blue")


def test_record_round_trip() -> None:
    record = ActivityRecord(
        id="a1",
        activity_type="t",
        payload={"x": [1, "é"]},
        priority=ActivityPriority.HIGH,
        max_retries=2,
        timeout=1.5,
        retry_count=1,
        metadata={"k": "v"},
        created_at=12.5,
        idempotency_key="key",
        last_error="boom",
    )
    assert ActivityRecord.decode(record.encode()) == record
    assert json.loads(record.encode())["payload"] == {"x": [1, "é"]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("nope", "not JSON"),
        ("[]", "not an object"),
        ('{"id": "a", "payload": 1}', "'type'"),
        ('{"id": "a", "type": "t", "payload": 1, "priority": "urgent"}', "priority"),
        ('{"id": "a", "type": "t", "payload": 1, "max_retries": -1}', "max_retries"),
        ('{"id": "a", "type": "t", "payload": 1, "timeout": "soon"}', "timeout"),
        ('{"id": "a", "type": "t", "payload": 1, "metadata": []}', "metadata"),
    ],
)
def test_corrupt_records_say_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(CorruptRecordError, match=message):
        ActivityRecord.decode(raw)


def test_encode_json_refuses_non_json_and_oversize() -> None:
    with pytest.raises(SerializationError, match="payload is not JSON"):
        encode_json(object(), "payload")
    with pytest.raises(SerializationError):
        encode_json(float("inf"), "payload")
    with pytest.raises(SerializationError, match="over the limit"):
        encode_json("é" * 600, "payload", limit=1000)  # 1202 bytes, 602 characters
    assert encode_json({"a": 1}, "payload") == '{"a":1}'


def test_documents_round_trip() -> None:
    assert ResultDocument.decode(ResultDocument.completed_json("[1]")).result == [1]
    dead = ResultDocument.decode(ResultDocument.dead_lettered_json("e", "timeout"))
    assert (dead.status, dead.error, dead.reason) == ("dead_lettered", "e", "timeout")
    assert ResultDocument.decode("garbage").reason == "corrupt"
    entry = DeadLetterEntry("a", "err", "corrupt", 1.0, None, "raw text")
    back = DeadLetterEntry.decode("a", entry.encode())
    assert (back.error, back.reason, back.raw, back.record) == ("err", "corrupt", "raw text", None)


def test_options_validation() -> None:
    assert ActivityOption(priority="low").priority is ActivityPriority.LOW  # type: ignore[arg-type]
    bad_options: list[dict[str, Any]] = [
        {"max_retries": -1},
        {"max_retries": True},
        {"timeout": 0},
        {"delay": -1},
        {"delay": 1, "run_at": dt.datetime.now(dt.UTC)},
        {"run_at": dt.datetime.now()},
        {"metadata": {1: "x"}},
        {"idempotency_key": ""},
    ]
    for bad in bad_options:
        with pytest.raises(ConfigurationError):
            ActivityOption(**bad)


def test_error_kinds_and_one_line_non_retryable() -> None:
    assert isinstance(ActivityError.retry("x"), RetryableError)
    assert isinstance(ActivityError.non_retry("x"), NonRetryableError)
    assert ActivityError.retry("x").retryable
    assert not ActivityError.non_retry("x").retryable
    empty: dict[str, int] = {}
    with pytest.raises(NonRetryableError, match="bad order: KeyError"), non_retryable("bad order"):
        empty["qty"]
    with pytest.raises(RetryableError), non_retryable():
        raise ActivityError.retry("kept as it is")


def test_registry_refuses_duplicates_and_non_async() -> None:
    registry = HandlerRegistry()

    async def handler(payload: Any, ctx: Any) -> Any:
        return None

    class Handler:
        def activity_type(self) -> str:
            return "obj"

        async def handle(self, payload: Any, ctx: Any) -> Any:
            return None

    registry.register("t", handler)
    registry.register(Handler())
    assert list(registry) == ["obj", "t"]
    with pytest.raises(DuplicateHandlerError):
        registry.register("t", handler)
    with pytest.raises(ConfigurationError, match="must be an async function"):
        registry.register("sync", lambda p, c: None)  # type: ignore[arg-type,return-value]


def test_every_script_documents_its_interface_and_builds_no_keys() -> None:
    for name in SCRIPT_NAMES:
        body = (PACKAGE / "scripts" / f"{name}.lua").read_text()
        header = body.split("\n\n", 1)[0]
        assert header.startswith(f"-- {name}:"), name
        assert "KEYS[1]" in body, name
        assert "Returns" in body, name
        # Keys come only from KEYS: no key names spelled or concatenated inside Lua.
        assert "runnerq:" not in body, name
        for call in re.findall(r"redis\.call\('(\w+)', ([^,)]+)", body):
            assert not call[1].strip().startswith(("'", '"')), (name, call)
        assert script_source(name).startswith("-- prelude")
