"""The pure side of the activity history (runnerq/history.py): lease tokens, events put
together, throughput from the per-minute counts, failure text."""

from __future__ import annotations

import json

from runnerq.history import (
    ActivityEvent,
    Progress,
    compose_events,
    dead_letter_tail,
    failed_tail,
    last_progress,
    lease_of,
    throughput,
)


def test_lease_tokens_give_the_worker_and_the_claim_time() -> None:
    assert lease_of("host:12:ab34:7@1700000000123") == ("host:12:ab34", 1700000000.123)
    assert lease_of("host:12:ab34:~7@1700000000000") == ("host:12:ab34", 1700000000.0)
    assert lease_of("host:12:ab34:7") == ("host:12:ab34", None)  # from before the history
    assert lease_of("w@x:3@5") == ("w@x", 0.005)


def test_events_put_together_in_order() -> None:
    record = json.dumps({"id": "a", "created_at": 10.5})
    stored = ['{"t":11000,"e":"claimed","w":"w1"}', '{"t":12000,"e":"lease_lost","w":"w1"}']
    events = compose_events(stored, "w2:9@13000", record)
    assert [(e.kind, e.at, e.worker) for e in events] == [
        ("enqueued", 10.5, None),
        ("claimed", 11.0, "w1"),
        ("lease_lost", 12.0, "w1"),
        ("claimed", 13.0, "w2"),
    ]
    result = json.dumps({"status": "completed", "lease": "w:3@1000", "result": 1})
    done = compose_events([], None, None, result, 2000)
    assert [(e.kind, e.at, e.worker) for e in done] == [
        ("claimed", 1.0, "w"),
        ("completed", 2.0, "w"),
    ]
    # A list that has the completion: the result document adds nothing.
    with_list = ['{"t":1000,"e":"claimed","w":"w"}', '{"t":2000,"e":"completed","w":"w"}']
    assert len(compose_events(with_list, None, None, result, 2000)) == 2
    last = '{"t":2000,"e":"completed","p":{"f":1,"m":null,"t":1900}}'
    assert last_progress(None, last) == Progress(1.0, None, 1.9)
    assert last_progress('{"f":0.5,"m":"x","t":3000}', last) == Progress(0.5, "x", 3.0)
    assert last_progress(None, None) is None
    assert compose_events([], None, "not json", "not json either", None) == []


def test_failure_text_is_escaped_and_cut() -> None:
    tail = failed_tail(2, 'quote " and\nnewline' + "x" * 1000)
    doc = json.loads("{" + tail[1:] + "}")
    assert doc["n"] == 2 and doc["err"].startswith('quote " and\nnewline')
    assert len(doc["err"]) == 503
    doc = json.loads("{" + dead_letter_tail(None, "corrupt", "e")[1:] + "}")
    assert doc == {"reason": "corrupt", "err": "e"}
    assert ActivityEvent.from_doc({"t": 1, "e": "failed", "n": True}) is not None


def test_throughput_sums_the_last_hour_and_day() -> None:
    now = 30_000_000
    raw = {
        f"{now}:c": "5",
        f"{now}:f": "1",
        f"{now - 59}:c": "2",
        f"{now - 60}:c": "100",  # a minute past the hour
        f"{now - 1439}:f": "7",
        f"{now - 1440}:f": "1000",  # past the day
        "junk": "1",
        f"{now}:x": "9",
        f"{now - 1}:c": "NaN",
    }
    seen = throughput(raw, now, series=3)
    assert (seen.completed_hour, seen.failed_hour) == (7, 1)
    assert (seen.completed_day, seen.failed_day) == (107, 8)
    assert seen.minutes == [(now - 2, 0, 0), (now - 1, 0, 0), (now, 5, 1)]
