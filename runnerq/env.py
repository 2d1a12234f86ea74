"""The Redis URL from the environment, as the operator's ConfigMap and worker pods set it.

The ``ActivityQueue`` operator writes a ConfigMap ``<name>-queue`` that producers load with
``envFrom``. When the queue's password lives in a Secret (``redis.passwordSecretRef``) the
ConfigMap cannot hold the URL; it holds ``RUNNERQ_REDIS_URL_TEMPLATE``, e.g.
``redis://:$(RUNNERQ_REDIS_PASSWORD)@redis:6379/0``, and Kubernetes does not expand ``$(VAR)``
in values loaded through ``envFrom``. ``redis_url_from_env()`` does it instead, with the
password URL-quoted (so any password works, unlike Kubernetes' own expansion in ``env:``):

    envFrom: [{configMapRef: {name: emails-queue}}]
    env:
      - name: RUNNERQ_REDIS_PASSWORD
        valueFrom: {secretKeyRef: {name: redis-auth, key: password}}

    client = ActivityClient(redis_url_from_env(), os.environ["RUNNERQ_QUEUE"])

The ``runnerq`` command resolves its URL the same way. Besides ``runnerq.cli`` this is the
only module that reads the environment, and only when called.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping

from .connection import redact_url
from .errors import ConfigurationError

__all__ = [
    "PASSWORD_ENV",
    "PASSWORD_PLACEHOLDER",
    "PASSWORD_SECRET_ENV",
    "URL_ENV",
    "URL_SECRET_ENV",
    "URL_TEMPLATE_ENV",
    "redis_url_from_env",
    "resolve_redis_url",
]

URL_ENV = "RUNNERQ_REDIS_URL"
URL_TEMPLATE_ENV = "RUNNERQ_REDIS_URL_TEMPLATE"
PASSWORD_ENV = "RUNNERQ_REDIS_PASSWORD"
PASSWORD_PLACEHOLDER = f"$({PASSWORD_ENV})"
# Where the operator's ConfigMap says a secret is ("<secret>/<key>"), for error messages.
URL_SECRET_ENV = "RUNNERQ_REDIS_URL_SECRET"
PASSWORD_SECRET_ENV = "RUNNERQ_REDIS_PASSWORD_SECRET"


def _get(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value if value else None  # an empty variable counts as unset, as in the CLI


def _fill(name: str, url: str, environ: Mapping[str, str]) -> str:
    if PASSWORD_PLACEHOLDER not in url:
        return url
    password = _get(environ, PASSWORD_ENV)
    if password is None:
        where = _get(environ, PASSWORD_SECRET_ENV)  # "<secret>/<key>" from the ConfigMap
        secret, _, key = (where or "").partition("/")
        said = f" (the queue's ConfigMap says it is in the Secret {where!r})" if where else ""
        ref = f"{{name: {secret or '...'}, key: {key or 'password'}}}"
        raise ConfigurationError(
            f"{name} {redact_url(url)!r} needs the Redis password, but {PASSWORD_ENV} is not"
            f" set{said}: add env: [{{name: {PASSWORD_ENV}, valueFrom: {{secretKeyRef: {ref}}}}}]"
        )
    return url.replace(PASSWORD_PLACEHOLDER, urllib.parse.quote(password, safe=""))


def resolve_redis_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The Redis URL the environment gives, or None when it says nothing about Redis.

    ``RUNNERQ_REDIS_URL`` if set, else ``RUNNERQ_REDIS_URL_TEMPLATE``; in either, a literal
    ``$(RUNNERQ_REDIS_PASSWORD)`` (one Kubernetes did not expand) is replaced by the
    URL-quoted value of ``RUNNERQ_REDIS_PASSWORD``. Raises ``ConfigurationError`` when the
    URL needs that password and it is not set, and when only ``RUNNERQ_REDIS_URL_SECRET``
    is set (the ConfigMap of a queue whose whole URL is in a Secret: set
    ``RUNNERQ_REDIS_URL`` from it). Error messages never contain a password.
    """
    env = os.environ if environ is None else environ
    url = _get(env, URL_ENV)
    if url is not None:
        return _fill(URL_ENV, url, env)
    template = _get(env, URL_TEMPLATE_ENV)
    if template is not None:
        return _fill(URL_TEMPLATE_ENV, template, env)
    where = _get(env, URL_SECRET_ENV)
    if where is not None:
        raise ConfigurationError(
            f"{URL_ENV} is not set: the queue's ConfigMap says the Redis URL is in the Secret"
            f" {where!r} (<name>/<key>); set {URL_ENV} from it"
        )
    return None


def redis_url_from_env(
    environ: Mapping[str, str] | None = None, *, default: str | None = None
) -> str:
    """``resolve_redis_url``, else ``default``; raises ``ConfigurationError`` (saying what
    to set) when the environment gives no URL and there is no default."""
    url = resolve_redis_url(environ)
    if url is not None:
        return url
    if default is not None:
        return default
    raise ConfigurationError(
        f"no Redis URL in the environment: set {URL_ENV}, or load the queue's ConfigMap"
        f" (with {URL_TEMPLATE_ENV}) and set {PASSWORD_ENV} from the Secret"
    )
