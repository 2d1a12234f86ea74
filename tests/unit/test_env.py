"""``runnerq.env``: the Redis URL from the environment a producer pod gets from the operator's
ConfigMap (``envFrom``) plus the password from its Secret."""

from __future__ import annotations

import urllib.parse

import pytest

import runnerq
from runnerq import ConfigurationError, redis_url_from_env
from runnerq.env import resolve_redis_url

TEMPLATE = "redis://:$(RUNNERQ_REDIS_PASSWORD)@redis.apps:6379/0"


def test_exported_from_the_package() -> None:
    assert runnerq.redis_url_from_env is redis_url_from_env


def test_plain_url_wins_over_the_template() -> None:
    env = {
        "RUNNERQ_REDIS_URL": "redis://r:6379/1",
        "RUNNERQ_REDIS_URL_TEMPLATE": TEMPLATE,
        "RUNNERQ_REDIS_PASSWORD": "pw",
    }
    assert redis_url_from_env(env) == "redis://r:6379/1"


def test_template_gets_the_password_url_quoted() -> None:
    password = "p@ss/w:rd?#% $()"
    env = {"RUNNERQ_REDIS_URL_TEMPLATE": TEMPLATE, "RUNNERQ_REDIS_PASSWORD": password}
    url = redis_url_from_env(env)
    assert url == f"redis://:{urllib.parse.quote(password, safe='')}@redis.apps:6379/0"
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == "redis.apps"
    assert parts.port == 6379
    assert urllib.parse.unquote(parts.password or "") == password


def test_template_keeps_user_and_query() -> None:
    env = {
        "RUNNERQ_REDIS_URL_TEMPLATE": "rediss://app:$(RUNNERQ_REDIS_PASSWORD)@r:6380"
        "?ssl_ca_certs=/etc/runnerq/redis-tls/ca.crt",
        "RUNNERQ_REDIS_PASSWORD": "s3cret",
    }
    assert redis_url_from_env(env) == (
        "rediss://app:s3cret@r:6380?ssl_ca_certs=/etc/runnerq/redis-tls/ca.crt"
    )


def test_template_without_placeholder_needs_no_password() -> None:
    assert redis_url_from_env({"RUNNERQ_REDIS_URL_TEMPLATE": "redis://r:1"}) == "redis://r:1"


def test_unexpanded_reference_in_the_url_is_filled_too() -> None:
    # Kubernetes leaves $(VAR) as it is when VAR is not defined before it in `env:`.
    env = {"RUNNERQ_REDIS_URL": TEMPLATE, "RUNNERQ_REDIS_PASSWORD": "pw"}
    assert redis_url_from_env(env) == "redis://:pw@redis.apps:6379/0"


@pytest.mark.parametrize("password", [None, ""])
def test_missing_password_is_a_clear_error(password: str | None) -> None:
    env = {
        "RUNNERQ_REDIS_URL_TEMPLATE": TEMPLATE,
        "RUNNERQ_REDIS_PASSWORD_SECRET": "redis-auth/password",
    }
    if password is not None:
        env["RUNNERQ_REDIS_PASSWORD"] = password
    with pytest.raises(ConfigurationError) as info:
        redis_url_from_env(env)
    message = str(info.value)
    assert "RUNNERQ_REDIS_URL_TEMPLATE" in message
    assert "RUNNERQ_REDIS_PASSWORD is not set" in message
    assert "'redis-auth/password'" in message
    assert "redis.apps:6379" in message


def test_errors_never_show_a_password() -> None:
    # A password written into the URL by hand next to a placeholder nobody fills in.
    env = {"RUNNERQ_REDIS_URL": "redis://user:hunter2@h:1/$(RUNNERQ_REDIS_PASSWORD)"}
    with pytest.raises(ConfigurationError) as info:
        redis_url_from_env(env)
    assert "hunter2" not in str(info.value)
    assert "user:***@h:1" in str(info.value)


def test_nothing_set() -> None:
    assert resolve_redis_url({}) is None
    assert redis_url_from_env({}, default="redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"
    with pytest.raises(ConfigurationError, match="no Redis URL in the environment"):
        redis_url_from_env({})
    # Empty variables count as unset, as everywhere in the CLI.
    assert resolve_redis_url({"RUNNERQ_REDIS_URL": "", "RUNNERQ_REDIS_URL_TEMPLATE": ""}) is None


def test_url_in_a_secret_the_producer_did_not_load() -> None:
    env = {"RUNNERQ_QUEUE": "emails", "RUNNERQ_REDIS_URL_SECRET": "redis/url"}
    with pytest.raises(
        ConfigurationError, match=r"in the Secret 'redis/url'.*set RUNNERQ_REDIS_URL"
    ):
        redis_url_from_env(env, default="redis://127.0.0.1:6379")
    assert redis_url_from_env({**env, "RUNNERQ_REDIS_URL": "redis://:pw@r:1"}) == (
        "redis://:pw@r:1"
    )


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNNERQ_REDIS_URL", raising=False)
    monkeypatch.setenv("RUNNERQ_REDIS_URL_TEMPLATE", TEMPLATE)
    monkeypatch.setenv("RUNNERQ_REDIS_PASSWORD", "a b")
    assert redis_url_from_env() == "redis://:a%20b@redis.apps:6379/0"
