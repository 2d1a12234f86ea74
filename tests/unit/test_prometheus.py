"""``PrometheusMetrics`` exposes what prometheus-client's own Counter and Histogram would for
the same reports, every engine metric from the start, and one family per name across queues."""

from __future__ import annotations

import threading

import prometheus_client
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runnerq.metrics import (
    ACTIVITY_COMPLETED,
    ACTIVITY_EXECUTION,
    ACTIVITY_QUEUE_WAIT,
    COUNTERS,
    DURATIONS,
    SCHEDULE_FIRED,
    SCHEDULE_MISSED,
    SCHEDULE_SKIPPED,
    FanoutMetrics,
    InMemoryMetrics,
    NoopMetrics,
    ScheduleMetricsSink,
)
from runnerq.prometheus import DURATION_BUCKETS, PrometheusMetrics

_SECONDS = st.sampled_from(DURATION_BUCKETS[:-1]) | st.floats(
    min_value=0.0, max_value=1e4, allow_nan=False
)


def _samples(registry: prometheus_client.CollectorRegistry, family: str) -> dict[str, float]:
    out = {}
    for metric in registry.collect():
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


@given(st.lists(_SECONDS, max_size=50))
def test_a_histogram_matches_prometheus_clients_own(observations: list[float]) -> None:
    ours, theirs = prometheus_client.CollectorRegistry(), prometheus_client.CollectorRegistry()
    sink = PrometheusMetrics("q", registry=ours)
    reference = prometheus_client.Histogram(
        "activity_execution_seconds",
        "reference",
        ["queue"],
        namespace="runnerq",
        registry=theirs,
        buckets=DURATION_BUCKETS,
    ).labels(queue="q")
    for seconds in observations:
        sink.observe_duration(ACTIVITY_EXECUTION, seconds)
        reference.observe(seconds)
    family = "runnerq_activity_execution_seconds"
    got, want = _samples(ours, family), _samples(theirs, family)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


def test_counters_add_up_in_the_text_format() -> None:
    registry = prometheus_client.CollectorRegistry()
    sink = PrometheusMetrics("emails", registry=registry)
    sink.inc_counter(ACTIVITY_COMPLETED)
    sink.inc_counter(ACTIVITY_COMPLETED, 4)
    labels = {"queue": "emails"}
    assert registry.get_sample_value("runnerq_activity_completed_total", labels) == 5
    text = prometheus_client.generate_latest(registry).decode()
    assert 'runnerq_activity_completed_total{queue="emails"} 5.0' in text
    assert "# TYPE runnerq_activity_completed_total counter" in text


def test_every_engine_metric_is_there_at_zero_before_it_is_reported() -> None:
    registry = prometheus_client.CollectorRegistry()
    PrometheusMetrics("q", registry=registry)
    labels = {"queue": "q"}
    for name in COUNTERS:
        assert registry.get_sample_value(f"runnerq_{name}_total", labels) == 0, name
    for name in DURATIONS:
        assert registry.get_sample_value(f"runnerq_{name}_seconds_count", labels) == 0, name
        assert registry.get_sample_value(f"runnerq_{name}_seconds_sum", labels) == 0, name
        inf = {**labels, "le": "+Inf"}
        assert registry.get_sample_value(f"runnerq_{name}_seconds_bucket", inf) == 0, name


def test_a_name_the_engine_does_not_report_appears_when_first_reported() -> None:
    registry = prometheus_client.CollectorRegistry()
    sink = PrometheusMetrics("q", registry=registry)
    assert registry.get_sample_value("runnerq_my_thing_total", {"queue": "q"}) is None
    sink.inc_counter("my_thing", 2)
    sink.observe_duration("my_step", 0.2)
    assert registry.get_sample_value("runnerq_my_thing_total", {"queue": "q"}) == 2
    assert registry.get_sample_value("runnerq_my_step_seconds_count", {"queue": "q"}) == 1


def test_queues_share_one_family_per_name_in_a_registry() -> None:
    registry = prometheus_client.CollectorRegistry(auto_describe=True)
    a = PrometheusMetrics("a", registry=registry)
    b = PrometheusMetrics("b", registry=registry)
    a_again = PrometheusMetrics("a", registry=registry)  # a second engine on the same queue
    a.inc_counter(ACTIVITY_COMPLETED, 2)
    a_again.inc_counter(ACTIVITY_COMPLETED, 3)
    b.observe_duration(ACTIVITY_QUEUE_WAIT, 0.01)
    name = "runnerq_activity_completed_total"
    assert registry.get_sample_value(name, {"queue": "a"}) == 5
    assert registry.get_sample_value(name, {"queue": "b"}) == 0
    count = "runnerq_activity_queue_wait_seconds_count"
    assert registry.get_sample_value(count, {"queue": "b"}) == 1
    text = prometheus_client.generate_latest(registry).decode()
    assert text.count("# TYPE runnerq_activity_completed_total counter") == 1
    # Another namespace is another set of families in the same registry.
    other = PrometheusMetrics("a", registry=registry, namespace="billing")
    other.inc_counter(ACTIVITY_COMPLETED)
    assert registry.get_sample_value("billing_activity_completed_total", {"queue": "a"}) == 1
    assert registry.get_sample_value(name, {"queue": "a"}) == 5


def test_a_clashing_metric_in_the_registry_is_refused_clearly() -> None:
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Counter("runnerq_activity_completed", "someone else's", registry=registry)
    with pytest.raises(ValueError, match="runnerq_activity_completed"):
        PrometheusMetrics("q", registry=registry)


def test_reports_from_several_threads_all_count() -> None:
    registry = prometheus_client.CollectorRegistry()
    sink = PrometheusMetrics("q", registry=registry)
    per_thread, threads = 20_000, 4

    def report() -> None:
        for _ in range(per_thread):
            sink.observe_duration(ACTIVITY_EXECUTION, 0.003)
            sink.inc_counter(ACTIVITY_COMPLETED)

    workers = [threading.Thread(target=report) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    labels = {"queue": "q"}
    total = per_thread * threads
    assert registry.get_sample_value("runnerq_activity_completed_total", labels) == total
    assert registry.get_sample_value("runnerq_activity_execution_seconds_count", labels) == total
    le = {**labels, "le": "0.0025"}
    assert registry.get_sample_value("runnerq_activity_execution_seconds_bucket", le) == 0
    le = {**labels, "le": "0.005"}
    assert registry.get_sample_value("runnerq_activity_execution_seconds_bucket", le) == total


def test_a_counter_only_goes_up() -> None:
    sink = PrometheusMetrics("q", registry=prometheus_client.CollectorRegistry())
    with pytest.raises(ValueError, match="only go up"):
        sink.inc_counter(ACTIVITY_COMPLETED, -1)


def test_schedule_counters_are_there_at_zero_and_count() -> None:
    registry = prometheus_client.CollectorRegistry()
    sink = PrometheusMetrics("reports", registry=registry)
    labels = {"queue": "reports"}
    names = (SCHEDULE_FIRED, SCHEDULE_SKIPPED, SCHEDULE_MISSED)
    assert set(names) <= set(COUNTERS)
    text = prometheus_client.generate_latest(registry).decode()
    for name in names:
        assert f'runnerq_{name}_total{{queue="reports"}} 0.0' in text, name
        assert f"# TYPE runnerq_{name}_total counter" in text, name
    sink.inc_counter(SCHEDULE_FIRED, 3)
    sink.inc_counter(SCHEDULE_MISSED, 2)
    assert registry.get_sample_value("runnerq_schedule_fired_total", labels) == 3
    assert registry.get_sample_value("runnerq_schedule_skipped_total", labels) == 0
    assert registry.get_sample_value("runnerq_schedule_missed_total", labels) == 2


def test_schedule_ticks_are_counted_per_schedule_too() -> None:
    registry = prometheus_client.CollectorRegistry()
    sink = PrometheusMetrics("reports", registry=registry)
    text = prometheus_client.generate_latest(registry).decode()
    assert "# TYPE runnerq_schedule_ticks_total counter" in text  # described before any tick
    sink.inc_schedule_counter(SCHEDULE_FIRED, "nightly", 2)
    sink.inc_schedule_counter(SCHEDULE_FIRED, "nightly")
    sink.inc_schedule_counter(SCHEDULE_MISSED, "hourly", 4)
    sink.inc_schedule_counter("activity_completed", "hourly")  # not a schedule counter
    value = registry.get_sample_value

    def ticks(schedule: str, outcome: str) -> float | None:
        labels = {"queue": "reports", "schedule": schedule, "outcome": outcome}
        return value("runnerq_schedule_ticks_total", labels)

    assert ticks("nightly", "fired") == 3
    assert ticks("hourly", "missed") == 4
    assert ticks("hourly", "fired") is None  # a series appears with its first tick
    text = prometheus_client.generate_latest(registry).decode()
    assert text.count("runnerq_schedule_ticks_total{") == 2


def test_schedule_labels_can_be_left_out() -> None:
    registry = prometheus_client.CollectorRegistry()
    sink = PrometheusMetrics("reports", registry=registry, schedule_labels=False)
    sink.inc_schedule_counter(SCHEDULE_FIRED, "nightly")
    text = prometheus_client.generate_latest(registry).decode()
    assert "runnerq_schedule_ticks_total{" not in text


def test_fanout_and_in_memory_sinks_pass_schedules_on() -> None:
    memory = InMemoryMetrics()
    fanout = FanoutMetrics(NoopMetrics(), memory)
    assert isinstance(fanout, ScheduleMetricsSink) and isinstance(memory, ScheduleMetricsSink)
    assert not isinstance(NoopMetrics(), ScheduleMetricsSink)
    fanout.inc_schedule_counter(SCHEDULE_SKIPPED, "s", 2)
    assert memory.schedule_counters == {(SCHEDULE_SKIPPED, "s"): 2}
