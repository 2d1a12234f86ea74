"""Where a queue's Redis is: the URL the workers get (secrets left to Kubernetes to inject)
and the connection the operator itself opens (secrets already read). Pure functions.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from runnerq.env import PASSWORD_ENV, PASSWORD_PLACEHOLDER, URL_ENV

from .spec import RedisSpec

__all__ = [
    "CA_MOUNT_PATH",
    "PASSWORD_ENV",
    "URL_ENV",
    "RedisTarget",
    "operator_target",
    "worker_url",
]

# URL_ENV, PASSWORD_ENV: the names runnerq.env resolves (producers use redis_url_from_env).
CA_MOUNT_PATH = "/etc/runnerq/redis-tls"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """One Redis server as the operator connects to it; queues with equal targets share a
    connection pool and a pipeline per poll."""

    url: str
    ca_data: str | None = None
    insecure: bool = False

    def connect_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {}
        if self.ca_data is not None:
            kwargs["ssl_ca_data"] = self.ca_data
        if self.insecure:
            kwargs["ssl_cert_reqs"] = "none"
            kwargs["ssl_check_hostname"] = False
        return kwargs


def _with_tls(url: str, redis: RedisSpec) -> str:
    if redis.tls and url.startswith("redis") and not url.startswith("rediss"):
        return "rediss" + url.removeprefix("redis")  # also redis+cluster://, redis+sentinel://
    return url


def _with_password(url: str, password: str) -> str:
    parts = urllib.parse.urlsplit(url)
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _with_query(url: str, params: dict[str, str]) -> str:
    if not params:
        return url
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if k not in dict(query)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="/")))


def worker_url(redis: RedisSpec) -> str | None:
    """The value of ``RUNNERQ_REDIS_URL`` in the worker pods, or None when it comes whole
    from ``urlSecretRef``. A password is referenced as ``$(RUNNERQ_REDIS_PASSWORD)``, which
    Kubernetes expands from the env var of that name (set from ``passwordSecretRef``)."""
    if redis.url is None:
        return None
    url = _with_tls(redis.url, redis)
    if redis.password_secret is not None:
        url = _with_password(url, PASSWORD_PLACEHOLDER)
    params: dict[str, str] = {}
    if redis.tls and redis.ca_secret is not None:
        params["ssl_ca_certs"] = f"{CA_MOUNT_PATH}/{redis.ca_secret.key}"
    if redis.tls and redis.insecure_skip_verify:
        params["ssl_cert_reqs"] = "none"
    return _with_query(url, params)


def operator_target(
    redis: RedisSpec,
    *,
    secret_url: str | None = None,
    password: str | None = None,
    ca_data: str | None = None,
) -> RedisTarget:
    """The operator's own connection, with the secrets' values already read."""
    url = secret_url if redis.url is None else redis.url
    if url is None:
        raise ValueError("the Redis URL Secret was not read")
    url = _with_tls(url.strip(), redis)
    if password is not None:
        url = _with_password(url, urllib.parse.quote(password, safe=""))
    # A CA path in the URL is a path inside the worker pods; the operator has the data.
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "ssl_ca_certs"]
    url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    return RedisTarget(
        url=url,
        ca_data=ca_data if redis.tls else None,
        insecure=redis.tls and redis.insecure_skip_verify,
    )
