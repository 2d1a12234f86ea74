"""Redis URLs for the workers (secrets by reference) and for the operator (by value)."""

from __future__ import annotations

from runnerq_operator.redis_target import RedisTarget, operator_target, worker_url
from runnerq_operator.spec import RedisSpec, SecretKeyRef


def test_plain_url_is_passed_through() -> None:
    redis = RedisSpec(url="redis://r:6379/2")
    assert worker_url(redis) == "redis://r:6379/2"
    assert operator_target(redis) == RedisTarget(url="redis://r:6379/2")


def test_password_is_quoted_for_the_operator() -> None:
    redis = RedisSpec(url="redis://user@r:6379", password_secret=SecretKeyRef("s", "password"))
    assert worker_url(redis) == "redis://user:$(RUNNERQ_REDIS_PASSWORD)@r:6379"
    target = operator_target(redis, password="p@ss/word")
    assert target.url == "redis://user:p%40ss%2Fword@r:6379"


def test_url_from_secret_is_used_whole() -> None:
    redis = RedisSpec(url_secret=SecretKeyRef("s", "url"))
    assert worker_url(redis) is None
    assert operator_target(redis, secret_url=" redis://:pw@r:1\n").url == "redis://:pw@r:1"


def test_tls_upgrades_scheme_and_carries_the_ca() -> None:
    redis = RedisSpec(
        url="redis://r:6380",
        tls=True,
        ca_secret=SecretKeyRef("ca", "ca.pem"),
        insecure_skip_verify=True,
    )
    assert worker_url(redis) == (
        "rediss://r:6380?ssl_ca_certs=/etc/runnerq/redis-tls/ca.pem&ssl_cert_reqs=none"
    )
    target = operator_target(redis, ca_data="PEM")
    assert target.url == "rediss://r:6380"
    assert target.connect_kwargs() == {
        "ssl_ca_data": "PEM",
        "ssl_cert_reqs": "none",
        "ssl_check_hostname": False,
    }


def test_targets_with_equal_settings_are_equal() -> None:
    # Queues on one Redis share a pool and a pipeline because their targets compare equal.
    a = operator_target(RedisSpec(url="redis://r:6379"))
    b = operator_target(RedisSpec(url="redis://r:6379"))
    assert a == b
    assert hash(a) == hash(b)
