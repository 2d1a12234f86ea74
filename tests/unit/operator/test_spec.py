"""Spec parsing: defaults as the CRD's, every problem reported with its field path."""

from __future__ import annotations

from typing import Any

import pytest
from runnerq_operator.spec import SecretKeyRef, SpecError, parse_spec


def minimal(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "redis": {"url": "redis://redis.default:6379/0"},
        "worker": {"image": "registry.example/app:1", "app": "myapp.tasks:engine"},
    }
    spec.update(extra)
    return spec


def test_minimal_spec_gets_the_defaults() -> None:
    spec = parse_spec(minimal(), "emails")

    assert spec.queue == "emails"
    assert spec.redis.url == "redis://redis.default:6379/0"
    assert spec.redis.tls is False
    assert spec.worker.concurrency == 10
    assert spec.worker.metrics_port == 9090
    assert spec.scaling.mode == "Operator"
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas) == (0, 10)
    assert spec.scaling.target_per_replica == 10  # worker.concurrency
    assert spec.scaling.poll_interval == 5.0
    assert spec.scaling.scale_down_window == 300.0
    assert spec.queue_config.paused is False
    assert spec.queue_config.max_retries is None
    assert spec.purge_on_delete is False


def test_target_defaults_to_concurrency_and_queue_name_can_differ() -> None:
    spec = parse_spec(
        minimal(queue="mail:outbound", worker={"image": "i", "app": "a:b", "concurrency": 4}),
        "emails",
    )
    assert spec.queue == "mail:outbound"
    assert spec.scaling.target_per_replica == 4


def test_full_spec() -> None:
    spec = parse_spec(
        minimal(
            redis={
                "url": "redis://r:6379",
                "passwordSecretRef": {"name": "redis-auth"},
                "tls": {"enabled": True, "caSecretRef": {"name": "redis-ca"}},
            },
            scaling={
                "minReplicas": 1,
                "maxReplicas": 20,
                "targetPerReplica": 50,
                "activationThreshold": 5,
                "pollIntervalSeconds": 2,
                "scaleUpStabilizationSeconds": 10,
                "scaleDownStabilizationSeconds": 60,
                "scheduledWithinSeconds": 30,
            },
            queueConfig={"paused": True, "maxRetries": 7, "timeoutSeconds": 90},
            deletionPolicy="Purge",
        ),
        "emails",
    )
    assert spec.redis.password_secret == SecretKeyRef("redis-auth", "password")
    assert spec.redis.ca_secret == SecretKeyRef("redis-ca", "ca.crt")
    assert spec.redis.tls is True
    assert spec.scaling.scheduled_within == 30.0
    assert spec.scaling.activation_threshold == 5
    assert spec.queue_config.timeout == 90.0
    assert spec.queue_config.max_retries == 7
    assert spec.purge_on_delete is True


def test_rediss_url_means_tls() -> None:
    assert parse_spec(minimal(redis={"url": "rediss://r:6380"}), "q").redis.tls is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"redis": {}}, "spec.redis is required"),
        (
            {"redis": {"url": "redis://r", "urlSecretRef": {"name": "s"}}},
            "set exactly one of spec.redis.url and spec.redis.urlSecretRef",
        ),
        ({"redis": {"url": "http://r"}}, "spec.redis.url must start with redis://, rediss://"),
        ({"redis": {"url": "redis://:hunter2@r:6379"}}, "must not carry a password"),
        (
            {"redis": {"urlSecretRef": {"name": "s"}, "passwordSecretRef": {"name": "p"}}},
            "spec.redis.passwordSecretRef goes with spec.redis.url",
        ),
        ({"worker": {"image": "i"}}, "spec.worker.app is required"),
        (
            {"worker": {"image": "i", "app": "myapp.tasks"}},
            "spec.worker.app must look like package.module:attribute",
        ),
        ({"worker": {"image": "i", "app": "a:b", "concurrency": 0}}, "concurrency must be >= 1"),
        ({"scaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas (5) must not exceed"),
        ({"scaling": {"maxReplicas": "ten"}}, "spec.scaling.maxReplicas must be an integer"),
        ({"scaling": {"mode": "Sideways"}}, "spec.scaling.mode must be Operator or External"),
        ({"queue": "a{b}"}, "spec.queue: invalid queue name"),
        ({"queueConfig": {"paused": "yes"}}, "spec.queueConfig.paused must be true or false"),
        ({"deletionPolicy": "Shred"}, "spec.deletionPolicy must be Retain or Purge"),
        ({"worker": {"image": "i", "app": "a:b", "env": [{"value": "x"}]}}, "env[0].name"),
    ],
)
def test_invalid_specs_say_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(minimal(**change), "q")
    assert message in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    bad = {"redis": {"url": "http://x"}, "worker": {"image": "", "app": "nope"}}
    with pytest.raises(SpecError) as caught:
        parse_spec(bad, "x" * 60)
    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith("metadata.name is at most 52 characters")


def test_cluster_and_sentinel_urls_are_accepted_and_upgraded_to_tls() -> None:
    from runnerq_operator.redis_target import operator_target, worker_url
    from runnerq_operator.spec import RedisSpec

    for url in ("redis+cluster://a:7000,b:7001", "redis+sentinel://s1:26379,s2:26379/mymaster"):
        spec = RedisSpec(url=url, tls=True)
        assert worker_url(spec) == url.replace("redis+", "rediss+")
        assert operator_target(spec, password="p w").url.startswith("rediss+")
        assert ":p%20w@" in operator_target(spec, password="p w").url
