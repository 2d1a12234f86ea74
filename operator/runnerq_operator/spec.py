"""An ActivityQueue's spec, parsed and checked: frozen dataclasses, or a ``SpecError`` that
lists every problem with its field path.

The API server already enforces the CRD's schema and CEL rules; this repeats those checks
(objects stored under an older CRD, or a cluster without CEL, must not crash the operator)
and applies the same defaults, so the operator works on a complete, valid spec only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from runnerq.errors import ConfigurationError, SerializationError
from runnerq.keys import validate_queue_name
from runnerq.limits import MAX_TYPES, KeyLimit, Limits, Rate, TypeLimit
from runnerq.record import encode_json
from runnerq.schedule import Schedule, validate_schedule_name
from runnerq.triggers import make_trigger, zone

__all__ = [
    "QueueConfigSpec",
    "QueueSpec",
    "RedisSpec",
    "ScalingSpec",
    "SecretKeyRef",
    "SpecError",
    "WorkerSpec",
    "parse_limits",
    "parse_schedules",
    "parse_spec",
]

MAX_NAME_LENGTH = 52
_APP = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$", re.ASCII)
_PASSWORD_IN_URL = re.compile(r"^[a-z+]+://[^/@]*:[^/@]*@")
_SCHEMES = (
    "redis://",
    "rediss://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+sentinel://",
    "rediss+sentinel://",
)
ScalingMode = Literal["Operator", "External"]
# The CRD's enum values (CamelCase, as the CRD's other enums) and runnerq's words for them.
PRIORITIES = {"Critical": "critical", "High": "high", "Normal": "normal", "Low": "low"}
CATCH_UP = {"Skip": "skip", "Latest": "latest", "All": "all"}
CONCURRENCY_POLICIES = {"Allow": "allow", "Forbid": "forbid", "Replace": "replace"}


class SpecError(ValueError):
    """The spec cannot be used; ``problems`` says why, one line per field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class RedisSpec:
    url: str | None = None
    url_secret: SecretKeyRef | None = None
    password_secret: SecretKeyRef | None = None
    tls: bool = False
    ca_secret: SecretKeyRef | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    image: str
    app: str
    concurrency: int = 10
    metrics_port: int = 9090
    termination_grace_seconds: int = 60
    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    env: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)
    service_account: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    pod_template: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ScalingSpec:
    mode: ScalingMode = "Operator"
    min_replicas: int = 0
    max_replicas: int = 10
    target_per_replica: int = 10
    activation_threshold: int = 0
    poll_interval: float = 5.0
    scale_up_window: float = 0.0
    scale_down_window: float = 300.0
    scheduled_within: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueConfigSpec:
    paused: bool = False
    max_retries: int | None = None
    timeout: float | None = None
    #: spec.limits as runnerq Limits; None: the queue has none (the field is removed).
    limits: Limits | None = None


@dataclass(frozen=True, slots=True)
class QueueSpec:
    queue: str
    redis: RedisSpec
    worker: WorkerSpec
    scaling: ScalingSpec = field(default_factory=ScalingSpec)
    queue_config: QueueConfigSpec = field(default_factory=QueueConfigSpec)
    replicas: int | None = None
    purge_on_delete: bool = False
    #: spec.schedules as runnerq Schedules (owner "operator"); empty when any is invalid.
    schedules: tuple[Schedule, ...] = ()
    #: What is wrong with spec.schedules: the schedules are refused as a whole (nothing
    #: half-written), the rest of the queue is served.
    schedule_problems: tuple[str, ...] = ()


class _Reader:
    """Reads typed values out of nested dicts, collecting every problem with its path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def section(self, data: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        value = data.get(path.rsplit(".", 1)[-1])
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.append(f"{path} must be an object, not {_kind(value)}")
            return {}
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        path: str,
        default: int | None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = data.get(path.rsplit(".", 1)[-1], default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.append(f"{path} must be an integer, not {value!r}")
            return default
        if minimum is not None and value < minimum:
            self.problems.append(f"{path} must be >= {minimum}, not {value}")
        if maximum is not None and value > maximum:
            self.problems.append(f"{path} must be <= {maximum}, not {value}")
        return value

    def req_int(self, data: Mapping[str, Any], path: str, default: int, **bounds: int) -> int:
        value = self.integer(data, path, default, **bounds)
        return default if value is None else value

    def text(self, data: Mapping[str, Any], path: str, *, required: bool = False) -> str | None:
        value = data.get(path.rsplit(".", 1)[-1])
        if value is None or value == "":
            if required:
                self.problems.append(f"{path} is required")
            return None
        if not isinstance(value, str):
            self.problems.append(f"{path} must be a string, not {_kind(value)}")
            return None
        return value

    def flag(self, data: Mapping[str, Any], path: str, default: bool) -> bool:
        value = data.get(path.rsplit(".", 1)[-1], default)
        if not isinstance(value, bool):
            self.problems.append(f"{path} must be true or false, not {value!r}")
            return default
        return value

    def objects(self, data: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any], ...]:
        value = data.get(path.rsplit(".", 1)[-1])
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.problems.append(f"{path} must be a list of objects")
            return ()
        return tuple(value)

    def strings(self, data: Mapping[str, Any], path: str) -> dict[str, str]:
        value = data.get(path.rsplit(".", 1)[-1])
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self.problems.append(f"{path} must map strings to strings")
            return {}
        return dict(value)

    def secret_ref(
        self, data: Mapping[str, Any], path: str, default_key: str
    ) -> SecretKeyRef | None:
        raw = self.section(data, path)
        if not raw:
            return None
        name = self.text(raw, f"{path}.name", required=True)
        key = self.text(raw, f"{path}.key") or default_key
        return SecretKeyRef(name, key) if name else None


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def parse_spec(spec: Mapping[str, Any], name: str) -> QueueSpec:
    """The spec of the ActivityQueue called ``name``, or ``SpecError`` listing what is wrong."""
    r = _Reader()
    if len(name) > MAX_NAME_LENGTH:
        r.problems.append(
            f"metadata.name is at most {MAX_NAME_LENGTH} characters (the worker Deployment and"
            f" its pods are named after it), not {len(name)}"
        )
    queue = r.text(spec, "spec.queue") or name
    try:
        validate_queue_name(queue)
    except ValueError as exc:
        r.problems.append(f"spec.queue: {exc}")
    redis = _redis(r, r.section(spec, "spec.redis"))
    worker = _worker(r, r.section(spec, "spec.worker"))
    scaling = _scaling(r, r.section(spec, "spec.scaling"), worker.concurrency)
    config = _queue_config(r, r.section(spec, "spec.queueConfig"))
    try:
        limits = parse_limits(spec.get("limits"))
    except SpecError as exc:
        r.problems.extend(exc.problems)
        limits = None
    if limits is not None:
        config = QueueConfigSpec(config.paused, config.max_retries, config.timeout, limits)
    replicas = r.integer(spec, "spec.replicas", None, minimum=0)
    policy = r.text(spec, "spec.deletionPolicy") or "Retain"
    if policy not in ("Retain", "Purge"):
        r.problems.append(f"spec.deletionPolicy must be Retain or Purge, not {policy!r}")
    if r.problems:
        raise SpecError(r.problems)
    schedule_problems: tuple[str, ...] = ()
    try:
        schedules = parse_schedules(spec.get("schedules"))
    except SpecError as exc:
        schedules, schedule_problems = (), tuple(exc.problems)
    return QueueSpec(
        queue=queue,
        redis=redis,
        worker=worker,
        scaling=scaling,
        queue_config=config,
        replicas=replicas,
        purge_on_delete=policy == "Purge",
        schedules=schedules,
        schedule_problems=schedule_problems,
    )


def _redis(r: _Reader, data: Mapping[str, Any]) -> RedisSpec:
    if not data:
        r.problems.append("spec.redis is required: give redis.url or redis.urlSecretRef")
        return RedisSpec()
    url = r.text(data, "spec.redis.url")
    url_secret = r.secret_ref(data, "spec.redis.urlSecretRef", "url")
    password = r.secret_ref(data, "spec.redis.passwordSecretRef", "password")
    if (url is None) == (url_secret is None):
        r.problems.append("set exactly one of spec.redis.url and spec.redis.urlSecretRef")
    if url is not None:
        if not url.startswith(_SCHEMES):
            r.problems.append(
                "spec.redis.url must start with redis://, rediss://, redis+cluster://,"
                f" rediss+cluster://, redis+sentinel:// or rediss+sentinel://, not {url!r}"
            )
        elif _PASSWORD_IN_URL.match(url):
            r.problems.append(
                "spec.redis.url must not carry a password: put it in a Secret and name it in"
                " spec.redis.passwordSecretRef"
            )
    if password is not None and url is None:
        r.problems.append(
            "spec.redis.passwordSecretRef goes with spec.redis.url; with urlSecretRef put the"
            " password into that URL"
        )
    tls = r.section(data, "spec.redis.tls")
    return RedisSpec(
        url=url,
        url_secret=url_secret,
        password_secret=password,
        tls=r.flag(tls, "spec.redis.tls.enabled", False)
        or (url is not None and url.startswith("rediss")),
        ca_secret=r.secret_ref(tls, "spec.redis.tls.caSecretRef", "ca.crt"),
        insecure_skip_verify=r.flag(tls, "spec.redis.tls.insecureSkipVerify", False),
    )


def _worker(r: _Reader, data: Mapping[str, Any]) -> WorkerSpec:
    p = "spec.worker"
    if not data:
        r.problems.append(f"{p} is required: give at least worker.image and worker.app")
    image = r.text(data, f"{p}.image", required=bool(data)) or ""
    app = r.text(data, f"{p}.app", required=bool(data)) or ""
    if app and not _APP.match(app):
        r.problems.append(
            f"{p}.app must look like package.module:attribute (e.g. myapp.tasks:engine),"
            f" not {app!r}"
        )
    pull_policy = r.text(data, f"{p}.imagePullPolicy")
    if pull_policy not in (None, "Always", "IfNotPresent", "Never"):
        r.problems.append(f"{p}.imagePullPolicy must be Always, IfNotPresent or Never")
    env = r.objects(data, f"{p}.env")
    for i, var in enumerate(env):
        if not isinstance(var.get("name"), str) or not var["name"]:
            r.problems.append(f"{p}.env[{i}].name is required")
    template = r.section(data, f"{p}.podTemplate")
    affinity = r.section(data, f"{p}.affinity")
    return WorkerSpec(
        image=image,
        app=app,
        concurrency=r.req_int(data, f"{p}.concurrency", 10, minimum=1, maximum=10_000),
        metrics_port=r.req_int(data, f"{p}.metricsPort", 9090, minimum=1, maximum=65535),
        termination_grace_seconds=r.req_int(
            data, f"{p}.terminationGracePeriodSeconds", 60, minimum=0
        ),
        image_pull_policy=pull_policy,
        image_pull_secrets=tuple(
            str(s.get("name")) for s in r.objects(data, f"{p}.imagePullSecrets")
        ),
        env=env,
        env_from=r.objects(data, f"{p}.envFrom"),
        resources=r.section(data, f"{p}.resources"),
        service_account=r.text(data, f"{p}.serviceAccountName"),
        node_selector=r.strings(data, f"{p}.nodeSelector"),
        tolerations=r.objects(data, f"{p}.tolerations"),
        affinity=affinity or None,
        pod_labels=r.strings(data, f"{p}.podLabels"),
        pod_annotations=r.strings(data, f"{p}.podAnnotations"),
        pod_template=template or None,
    )


def _scaling(r: _Reader, data: Mapping[str, Any], concurrency: int) -> ScalingSpec:
    p = "spec.scaling"
    mode = r.text(data, f"{p}.mode") or "Operator"
    if mode not in ("Operator", "External"):
        r.problems.append(f"{p}.mode must be Operator or External, not {mode!r}")
        mode = "Operator"
    low = r.req_int(data, f"{p}.minReplicas", 0, minimum=0)
    high = r.req_int(data, f"{p}.maxReplicas", 10, minimum=1, maximum=10_000)
    if low > high:
        r.problems.append(f"{p}.minReplicas ({low}) must not exceed {p}.maxReplicas ({high})")
    return ScalingSpec(
        mode="External" if mode == "External" else "Operator",
        min_replicas=low,
        max_replicas=high,
        target_per_replica=r.req_int(data, f"{p}.targetPerReplica", concurrency, minimum=1),
        activation_threshold=r.req_int(data, f"{p}.activationThreshold", 0, minimum=0),
        poll_interval=float(
            r.req_int(data, f"{p}.pollIntervalSeconds", 5, minimum=1, maximum=3600)
        ),
        scale_up_window=float(
            r.req_int(data, f"{p}.scaleUpStabilizationSeconds", 0, minimum=0, maximum=3600)
        ),
        scale_down_window=float(
            r.req_int(data, f"{p}.scaleDownStabilizationSeconds", 300, minimum=0, maximum=3600)
        ),
        scheduled_within=float(
            r.req_int(data, f"{p}.scheduledWithinSeconds", 0, minimum=0, maximum=86400)
        ),
    )


def _queue_config(r: _Reader, data: Mapping[str, Any]) -> QueueConfigSpec:
    p = "spec.queueConfig"
    timeout = r.integer(data, f"{p}.timeoutSeconds", None, minimum=1, maximum=604800)
    return QueueConfigSpec(
        paused=r.flag(data, f"{p}.paused", False),
        max_retries=r.integer(data, f"{p}.maxRetries", None, minimum=0, maximum=1000),
        timeout=float(timeout) if timeout is not None else None,
    )


def parse_limits(value: Any, path: str = "spec.limits") -> Limits | None:
    """spec.limits as runnerq ``Limits`` (None when absent or empty), or ``SpecError``
    listing every problem with its field path. The CRD's names are camelCase and periods are
    ``periodSeconds``; runnerq's checks (``Limits``) run last, on what passed these."""
    if value is None:
        return None
    r = _Reader()
    if not isinstance(value, Mapping):
        raise SpecError([f"{path} must be an object, not {_kind(value)}"])
    _unknown(r, value, path, ("rate", "concurrency", "types", "keys"))
    rate = _rate(r, value, f"{path}.rate")
    concurrency = r.integer(value, f"{path}.concurrency", None, minimum=1)
    types: dict[str, TypeLimit] = {}
    found = r.section(value, f"{path}.types")
    if len(found) > MAX_TYPES:
        r.problems.append(f"{path}.types: at most {MAX_TYPES} types, not {len(found)}")
    for name, part in found.items():
        where = f"{path}.types[{name!r}]"
        if not isinstance(name, str) or not name:
            r.problems.append(f"{where}: a type name must be a non-empty string")
            continue
        limit = _part(r, {"t": part}, where, "t")
        if limit is not None and limit != (None, None):  # an empty part limits nothing
            types[name] = TypeLimit(*limit)
    keys = _part(r, value, f"{path}.keys", "keys")
    if r.problems:
        raise SpecError(r.problems)
    try:
        limits = Limits(
            rate=rate,
            concurrency=concurrency,
            types=types,
            keys=None if keys is None or keys == (None, None) else KeyLimit(*keys),
        )
    except ConfigurationError as exc:  # what runnerq checks beyond the above
        raise SpecError([f"{path}: {exc}"]) from exc
    return None if limits.empty else limits


def _unknown(r: _Reader, data: Mapping[str, Any], path: str, known: tuple[str, ...]) -> None:
    for name in sorted(str(k) for k in data if k not in known):
        r.problems.append(f"{path}.{name} is not a field (known: {', '.join(known)})")


def _rate(r: _Reader, data: Mapping[str, Any], path: str) -> Rate | None:
    found = r.section(data, path)
    if not found:
        return None
    before = len(r.problems)
    _unknown(r, found, path, ("limit", "periodSeconds", "burst"))
    limit = r.integer(found, f"{path}.limit", None, minimum=1)
    if limit is None and "limit" not in found:
        r.problems.append(f"{path}.limit is required")
    period = r.req_int(found, f"{path}.periodSeconds", 1, minimum=1)
    burst = r.integer(found, f"{path}.burst", None, minimum=1)
    if len(r.problems) > before or limit is None:
        return None
    return Rate(limit, float(period), burst)


def _part(
    r: _Reader, data: Mapping[str, Any], path: str, name: str
) -> tuple[Rate | None, int | None] | None:
    """A {rate, concurrency} object (a type's or the keys'), None when absent or wrong."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        r.problems.append(f"{path} must be an object, not {_kind(value)}")
        return None
    before = len(r.problems)
    _unknown(r, value, path, ("rate", "concurrency"))
    rate = _rate(r, value, f"{path}.rate")
    concurrency = r.integer(value, f"{path}.concurrency", None, minimum=1)
    if len(r.problems) > before:
        return None
    return rate, concurrency


def parse_schedules(value: Any, path: str = "spec.schedules") -> tuple[Schedule, ...]:
    """spec.schedules as runnerq Schedules owned by the operator, or ``SpecError`` listing
    every problem. The API server checks the shape (CEL); the time zones (zoneinfo), cron
    expressions (cronsim) and payloads (runnerq's JSON encoder) are checked here only."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise SpecError([f"{path} must be a list of objects"])
    r = _Reader()
    names: dict[str, int] = {}
    schedules: list[Schedule] = []
    for i, item in enumerate(value):
        before = len(r.problems)
        schedule = _schedule(r, item, f"{path}[{i}]")
        name = item.get("name")
        if isinstance(name, str) and name in names:
            r.problems.append(
                f"{path}[{i}].name: {name!r} is also the name of {path}[{names[name]}]"
            )
        elif isinstance(name, str):
            names[name] = i
        if schedule is not None and len(r.problems) == before:
            schedules.append(schedule)
    if r.problems:
        raise SpecError(r.problems)
    return tuple(schedules)


def _choice(
    r: _Reader, data: Mapping[str, Any], path: str, words: dict[str, str], default: str
) -> str:
    found = r.text(data, path) or default
    if found not in words:
        r.problems.append(f"{path} must be one of {', '.join(words)}, not {found!r}")
        return words[default]
    return words[found]


def _schedule(r: _Reader, item: Mapping[str, Any], p: str) -> Schedule | None:
    """One schedule, or None with its problems added to ``r``."""
    before = len(r.problems)
    name = r.text(item, f"{p}.name", required=True)
    if name is not None:
        try:
            validate_schedule_name(name)
        except ConfigurationError as exc:
            r.problems.append(f"{p}.name: {exc}")
    cron = r.text(item, f"{p}.cron")
    every = r.integer(item, f"{p}.everySeconds", None, minimum=1)
    timezone = r.text(item, f"{p}.timeZone") or "UTC"
    try:
        zone(timezone)
    except ConfigurationError as exc:
        r.problems.append(f"{p}.timeZone: {exc}")
        timezone = "UTC"  # so that the cron expression is still checked
    if (cron is None) == (every is None):
        r.problems.append(f"set exactly one of {p}.cron and {p}.everySeconds")
    elif cron is not None:
        try:
            make_trigger(cron, None, timezone)
        except ConfigurationError as exc:
            r.problems.append(f"{p}.cron: {exc}")
    activity = r.section(item, f"{p}.activity")
    activity_type = r.text(activity, f"{p}.activity.type", required=True)
    payload = activity.get("payload")
    try:
        encode_json(payload, f"{p}.activity.payload")
    except SerializationError as exc:
        r.problems.append(str(exc))
    priority = _choice(r, activity, f"{p}.activity.priority", PRIORITIES, "Normal")
    max_retries = r.integer(activity, f"{p}.activity.maxRetries", None, minimum=0, maximum=1000)
    timeout = r.integer(activity, f"{p}.activity.timeoutSeconds", None, minimum=1, maximum=604800)
    metadata = dict(r.section(activity, f"{p}.activity.metadata"))
    catch_up = _choice(r, item, f"{p}.catchUp", CATCH_UP, "Skip")
    limit = r.req_int(item, f"{p}.catchUpLimit", 10, minimum=1, maximum=1000)
    deadline = r.integer(item, f"{p}.startingDeadlineSeconds", None, minimum=1)
    concurrency = _choice(r, item, f"{p}.concurrencyPolicy", CONCURRENCY_POLICIES, "Allow")
    suspend = r.flag(item, f"{p}.suspend", False)
    if len(r.problems) > before or name is None or activity_type is None:
        return None
    try:
        return Schedule(
            name,
            activity_type,
            cron=cron,
            every=every,
            timezone=timezone,
            payload=payload,
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            metadata=metadata,
            catch_up=catch_up,  # type: ignore[arg-type]  # one of CATCH_UP's values
            catch_up_limit=limit,
            starting_deadline=deadline,
            concurrency=concurrency,  # type: ignore[arg-type]  # one of CONCURRENCY_POLICIES'
            suspended=suspend,
            owner="operator",
        )
    except ConfigurationError as exc:  # what runnerq checks beyond the above
        r.problems.append(f"{p}: {exc}")
        return None
