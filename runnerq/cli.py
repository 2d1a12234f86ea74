"""The ``runnerq`` command: run a worker, look at a queue, manage its dead letters, its
schedules and its limits, enqueue, and run the demo.

Connection settings come from flags, else the environment (``RUNNERQ_REDIS_URL``, or the
operator ConfigMap's ``RUNNERQ_REDIS_URL_TEMPLATE`` with ``RUNNERQ_REDIS_PASSWORD``: see
``runnerq.env``; ``RUNNERQ_QUEUE``, ``RUNNERQ_MAX_WORKERS``, ``RUNNERQ_METRICS_PORT``), else
the defaults. This module and ``runnerq.env`` are the only ones that read the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import inspect
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from . import exit_guard
from .client import ActivityClient
from .config import DEFAULT_QUEUE, DEFAULT_REDIS_URL
from .engine import WorkerEngine, WorkerEngineBuilder
from .env import redis_url_from_env, resolve_redis_url
from .errors import ConfigurationError, RunnerQError, WorkerError
from .limits import Limits, LimitStats
from .options import ActivityOption
from .priority import ActivityPriority
from .schedule import CATCH_UP, CONCURRENCY, Schedule
from .schedules import ScheduleInfo, ScheduleStore

__all__ = ["load_engine", "main"]

log = logging.getLogger("runnerq.cli")


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _int_env(name: str) -> int | None:
    value = _env(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, not {value!r}") from None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float:
    """A duration flag: seconds (``10``, ``2.5``) or a number with a unit: ``500ms``, ``30s``,
    ``5m``, ``1h``. Checked for sign and finiteness where it is used (``ActivityOption``)."""
    value = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h") if value.endswith(u)), "")
    try:
        return float(value[: len(value) - len(unit)]) * _UNITS.get(unit, 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give seconds (10, 2.5) or 500ms, 30s, 5m, 1h"
        ) from None


def load_engine(path: str) -> WorkerEngine:
    """Import ``pkg.module:attr``: a ``WorkerEngine``, a builder, or a function returning one."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"app must look like 'package.module:engine', not {path!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(target, WorkerEngineBuilder):
        target = target.engine()
    elif callable(target) and not isinstance(target, WorkerEngine):
        target = target()
        if inspect.isawaitable(target):
            raise ConfigurationError(f"{path} must not be async: return the engine unconnected")
    if not isinstance(target, WorkerEngine):
        raise ConfigurationError(f"{path} is a {type(target).__name__}, not a runnerq WorkerEngine")
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runnerq", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url",
        help="Redis URL (env RUNNERQ_REDIS_URL, or RUNNERQ_REDIS_URL_TEMPLATE"
        " + RUNNERQ_REDIS_PASSWORD)",
    )
    common.add_argument("--queue", help="queue name (env RUNNERQ_QUEUE)")
    common.add_argument(
        "--log-level",
        default=_env("RUNNERQ_LOG_LEVEL"),
        help="default: INFO for worker, WARNING otherwise",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", parents=[common], help="run the handlers of an app")
    worker.add_argument("app", help="the engine to run, as package.module:engine")
    worker.add_argument(
        "--max-workers", type=int, help="concurrent activities (env RUNNERQ_MAX_WORKERS)"
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics, /healthz, /readyz (env RUNNERQ_METRICS_PORT)",
    )
    worker.add_argument(
        "--no-schedule-labels",
        action="store_true",
        help="count schedule ticks per queue only, not also per schedule (for queues with"
        " very many schedules; env RUNNERQ_SCHEDULE_LABELS=0)",
    )

    stats = sub.add_parser("stats", parents=[common], help="print the queue's statistics")
    stats.add_argument("--json", action="store_true", help="print JSON")

    dlq = sub.add_parser("dlq", parents=[common], help="the dead-letter queue")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", parents=[common], help="list dead-lettered activities")
    dlq_list.add_argument("--limit", type=int, default=100)
    dlq_list.add_argument("--json", action="store_true")
    requeue = dlq_sub.add_parser(
        "requeue", parents=[common], help="run dead-lettered activities again"
    )
    requeue.add_argument("id", nargs="?", help="the activity id")
    requeue.add_argument("--all", action="store_true", help="requeue every dead-lettered activity")
    dlq_sub.add_parser("purge", parents=[common], help="delete every dead-lettered activity")

    enqueue = sub.add_parser("enqueue", parents=[common], help="enqueue one activity")
    enqueue.add_argument("type", help="activity type")
    enqueue.add_argument("--payload", default="null", help="JSON payload")
    enqueue.add_argument(
        "--priority", default="normal", choices=[p.value for p in ActivityPriority]
    )
    enqueue.add_argument(
        "--delay", type=_duration, help="run it later: seconds, or 500ms, 30s, 5m, 1h"
    )
    enqueue.add_argument("--max-retries", type=int)
    enqueue.add_argument(
        "--timeout", type=_duration, help="its timeout: seconds, or 500ms, 30s, 5m, 1h"
    )
    enqueue.add_argument("--idempotency-key")
    enqueue.add_argument("--wait", action="store_true", help="wait for the result and print it")
    enqueue.add_argument(
        "--wait-timeout", type=_duration, default=None, help="how long --wait waits (as --delay)"
    )

    _schedules_parser(sub, common)

    _limits_parser(sub, common)

    _console_parser(sub)

    demo = sub.add_parser(
        "demo", parents=[common], help="run the demo (embedded Redis if none given)"
    )
    demo.add_argument("--quick", action="store_true", help="shorter delays")
    return parser


def _console_parser(sub: Any) -> None:
    console = sub.add_parser(
        "console",
        help="serve the web console and its JSON API (docs/console.md)",
        description="Serve the console: every queue of one Redis, live, with actions by role."
        " Give --tokens-file and/or --trusted-proxy; --no-auth only on a loopback --host.",
    )
    console.add_argument(
        "--redis-url",
        help="Redis URL (env RUNNERQ_REDIS_URL, or RUNNERQ_REDIS_URL_TEMPLATE"
        " + RUNNERQ_REDIS_PASSWORD); never shown by the console",
    )
    console.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    console.add_argument("--port", type=int, default=8080, help="port to listen on (8080)")
    console.add_argument(
        "--queue",
        action="append",
        default=[],
        dest="queues",
        metavar="Q",
        help="show only this queue (repeat for more; default: every queue in the Redis)",
    )
    console.add_argument(
        "--tokens-file", help="bearer tokens, one 'sha256:<hex> <role> <name>' per line"
    )
    console.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="believe X-Forwarded-User/-Groups from these addresses (repeat for more)",
    )
    console.add_argument(
        "--group-role",
        action="append",
        default=[],
        metavar="GROUP=ROLE",
        help="role of a proxy group: viewer, operator or admin (repeat for more)",
    )
    console.add_argument(
        "--proxy-default-role",
        default="viewer",
        help="role of a proxied user in no mapped group: viewer, operator, admin or none",
    )
    console.add_argument("--read-only", action="store_true", help="everyone is a viewer")
    console.add_argument(
        "--no-auth",
        action="store_true",
        help="no authentication at all: allowed only with a loopback --host",
    )
    console.add_argument(
        "--secure-cookies", action="store_true", help="mark cookies Secure (served over HTTPS)"
    )
    console.add_argument(
        "--live-interval",
        type=_duration,
        default=1.0,
        help="shortest time between two live updates of a page (1s)",
    )
    console.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="read ActivityQueues (the overview's cluster field) with this kubeconfig"
        " (default: the pod's service account, in a cluster)",
    )
    console.add_argument(
        "--kube-namespace",
        action="append",
        default=[],
        dest="kube_namespaces",
        metavar="NS",
        help="read only this namespace's ActivityQueues (repeat for more; default: all)",
    )
    console.add_argument(
        "--kube-events",
        action="store_true",
        help="post each audited action as an Event on its ActivityQueue (needs create events)",
    )
    console.add_argument(
        "--no-kube",
        action="store_true",
        help="do not read ActivityQueues, even in a cluster",
    )
    console.add_argument("--log-level", default=_env("RUNNERQ_LOG_LEVEL"), help="default: WARNING")


def _limits_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    limits = sub.add_parser(
        "limits", parents=[common], help="the queue's rate and concurrency limits"
    )
    cmds = limits.add_subparsers(dest="limits_command", required=True)
    show = cmds.add_parser("show", parents=[common], help="print the queue's limits")
    show.add_argument("--json", action="store_true", help="print them as JSON")
    put = cmds.add_parser(
        "set",
        parents=[common],
        help="replace the queue's limits (JSON, or flags); every worker's next claim applies them",
        description="Replace the queue's limits as a whole: give them as JSON (as 'limits show"
        " --json' prints them) or with the flags below, not both. A RATE is N/PERIOD (50/1s,"
        " 600/1m, 5/0.5; PERIOD as --every, seconds when bare) or N alone (per second).",
    )
    put.add_argument("--json", dest="limits_json", metavar="JSON", help="the limits as JSON")
    put.add_argument("--rate", metavar="RATE", help="the whole queue's rate")
    put.add_argument("--burst", help="the queue rate's burst (default: its N)")
    put.add_argument("--concurrency", help="most running at once, over all workers")
    put.add_argument("--key-rate", metavar="RATE", help="each limit key's rate")
    put.add_argument("--key-burst", help="each limit key rate's burst")
    put.add_argument("--key-concurrency", help="most running at once per limit key")
    put.add_argument(
        "--type-rate",
        action="append",
        default=[],
        metavar="TYPE=RATE",
        help="an activity type's rate (repeat for more types)",
    )
    put.add_argument(
        "--type-concurrency",
        action="append",
        default=[],
        metavar="TYPE=N",
        help="an activity type's concurrency (repeat for more types)",
    )
    cmds.add_parser("clear", parents=[common], help="remove every limit of the queue")


def _schedules_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    schedules = sub.add_parser("schedules", parents=[common], help="the queue's schedules")
    cmds = schedules.add_subparsers(dest="schedules_command", required=True)
    listing = cmds.add_parser("list", parents=[common], help="every schedule, with its progress")
    listing.add_argument("--json", action="store_true", help="print JSON")
    trigger = cmds.add_parser(
        "trigger", parents=[common], help="enqueue a schedule's activity now; prints its id"
    )
    trigger.add_argument("name")
    cmds.add_parser("resume", parents=[common], help="fire again from the next tick").add_argument(
        "name"
    )
    for command, what in (("suspend", "stop firing it"), ("delete", "remove it")):
        p = cmds.add_parser(command, parents=[common], help=what)
        p.add_argument("name")
        p.add_argument(
            "--force", action="store_true", help="even one the ActivityQueue's spec owns"
        )
    add = cmds.add_parser(
        "add", parents=[common], help="add a schedule, or change one added from here"
    )
    add.add_argument("name", help="unique on the queue: letters, digits, '.', '_', '-'")
    add.add_argument("--type", required=True, dest="activity_type", help="activity type")
    add.add_argument("--cron", help="cron expression: 5 fields, or 6 with seconds first")
    add.add_argument("--every", type=_duration, help="interval: seconds, or 30s, 5m, 1h")
    add.add_argument("--timezone", default="UTC", help="IANA time zone of --cron (UTC)")
    add.add_argument("--payload", default="null", help="JSON payload")
    add.add_argument("--priority", default="normal", choices=[p.value for p in ActivityPriority])
    add.add_argument("--max-retries", type=int)
    add.add_argument("--timeout", type=_duration, help="each run's timeout (as --every)")
    add.add_argument("--metadata", help="JSON object given to each run")
    add.add_argument("--catch-up", default="skip", choices=CATCH_UP, help="missed ticks (skip)")
    add.add_argument("--catch-up-limit", type=int, default=10, help="runs at most, with all")
    add.add_argument(
        "--starting-deadline", type=_duration, help="a tick later than this never runs"
    )
    add.add_argument("--concurrency", default="allow", choices=CONCURRENCY, help="overlap (allow)")
    add.add_argument("--suspended", action="store_true", help="add it suspended")


def _connection(args: argparse.Namespace) -> tuple[str, str]:
    url = args.redis_url or redis_url_from_env(default=DEFAULT_REDIS_URL)
    queue = args.queue or _env("RUNNERQ_QUEUE") or DEFAULT_QUEUE
    return url, queue


async def _worker(args: argparse.Namespace) -> int:
    from .health import HealthServer

    # SIGTERM before the engine's own handlers are in place (while the app is imported and
    # set up) or after they are gone (while it exits): the worker stops, or goes on
    # stopping, and exits 0 rather than die of the signal. (Ctrl-C keeps its default.)
    stops: list[WorkerEngine] = []
    early: list[int] = []

    def stop_soon(signum: int, frame: object) -> None:
        early.append(signum)
        for engine in stops:
            engine.request_stop()

    signal.signal(signal.SIGTERM, stop_soon)
    engine = load_engine(args.app)
    stops.append(engine)
    if early:
        engine.request_stop()
    changes: dict[str, Any] = {}
    url = args.redis_url or resolve_redis_url()
    if url:
        changes["redis_url"] = url
    queue = args.queue or _env("RUNNERQ_QUEUE")
    if queue:
        changes["queue_name"] = queue
    max_workers = args.max_workers or _int_env("RUNNERQ_MAX_WORKERS")
    if max_workers:
        changes["max_workers"] = max_workers
    engine.configure(**changes)
    port = args.metrics_port if args.metrics_port is not None else _int_env("RUNNERQ_METRICS_PORT")
    if port is not None:
        labels = not args.no_schedule_labels and _env("RUNNERQ_SCHEDULE_LABELS") != "0"
        # (after the queue name is final)
        engine.configure(metrics=_with_prometheus(engine, schedule_labels=labels))
    server = None
    if port is not None:
        server = HealthServer(lambda: engine.worker is not None and engine.worker.ready, port)
        await server.start()
    try:
        await engine.start()
    finally:
        if server is not None:
            await server.stop()
        await engine.aclose()
    return 0


def _with_prometheus(engine: WorkerEngine, *, schedule_labels: bool) -> Any:
    from .metrics import FanoutMetrics, NoopMetrics
    from .prometheus import PrometheusMetrics

    queue = engine.queue_name
    prom = PrometheusMetrics(queue=queue, schedule_labels=schedule_labels)
    if isinstance(engine.metrics, NoopMetrics):
        return prom
    return FanoutMetrics(engine.metrics, prom)


async def _stats(args: argparse.Namespace) -> int:
    url, queue = _connection(args)
    async with ActivityClient(url, queue) as client:
        stats = await client.get_stats()
        schedules = await client.schedules.list()
        try:
            limits: Limits | str = await client.get_limits()
            limit_stats = await client.get_limit_stats()
        except ConfigurationError as exc:  # limits written by hand: the rest still shows
            limits, limit_stats = str(exc), LimitStats()
    if args.json:
        doc = {
            **stats.as_dict(),
            "schedules": [_schedule_stats(i) for i in schedules],
            "limits": limits.to_dict() if isinstance(limits, Limits) else {"error": limits},
            "limit_stats": limit_stats.as_dict(),
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"queue {queue}{'  (paused)' if stats.paused else ''}")
    for name in (
        "pending",
        "running",
        "scheduled",
        "dead_letter",
        "completed",
        "failed",
        "retried",
        "cancelled",
        "redelivered",
        "enqueued",
    ):
        print(f"  {name:<12} {getattr(stats, name)}")
    print(
        "  pending by priority: "
        + ", ".join(f"{p.value} {n}" for p, n in stats.by_priority.items())
    )
    if schedules:
        print("  schedules:")
    for info in schedules:
        state = info.state
        print(
            f"    {info.name}  next {_when(state.next_tick, info.suspended)}"
            f"  last {_when(state.last_tick)}  fired {state.fired}"
            f"  skipped {state.skipped}  missed {state.missed}"
        )
    _print_limit_stats(limits, limit_stats)
    return 0


def _print_limit_stats(limits: Limits | str, stats: LimitStats) -> None:
    """The limits part of ``runnerq stats``: printed when the queue has limits or anything
    was throttled or held (``limits``: why they cannot be read, when they cannot)."""
    if isinstance(limits, str):
        print(f"  limits: unreadable ({limits}); the claim takes them as none")
        return
    figures = stats.as_dict()
    counts = {k: v for k, v in figures.items() if isinstance(v, dict) and v}
    if limits.empty and not stats.throttled and not counts:
        return
    print(f"  limits: {_limits_line(limits) if not limits.empty else 'none'}")
    own = limits.rate is not None or limits.concurrency is not None
    eligible = stats.eligible if own else "all pending (no queue rate or concurrency)"
    print(f"    eligible now  {eligible}")
    print(f"    throttled     {stats.throttled} (queue {stats.throttled_queue})")
    for name, values in counts.items():  # by type and by key, as LimitStats gives them
        shown = ", ".join(f"{k} {_figure(v)}" for k, v in sorted(values.items()))
        print(f"    {name.replace('_', ' ')}: {shown}")


def _figure(value: object) -> str:
    return f"{value:.1f}s" if isinstance(value, float) else str(value)


def _rate_words(rate: dict[str, Any]) -> str:
    return f"{rate['limit']}/{rate['period']:g}s burst {rate['burst']}"


def _limit_words(part: dict[str, Any]) -> str:
    words = []
    if "rate" in part:
        words.append(f"rate {_rate_words(part['rate'])}")
    if "concurrency" in part:
        words.append(f"concurrency {part['concurrency']}")
    return ", ".join(words)


def _limits_line(limits: Limits) -> str:
    doc = limits.to_dict()
    parts = [_limit_words(doc)] if _limit_words(doc) else []
    for name, part in doc.get("types", {}).items():
        parts.append(f"type {name}: {_limit_words(part)}")
    if "keys" in doc:
        parts.append(f"each key: {_limit_words(doc['keys'])}")
    return "; ".join(parts)


async def _limits(args: argparse.Namespace) -> int:
    url, queue = _connection(args)
    command = args.limits_command
    wanted = _limits_from(args) if command == "set" else None  # checked before connecting
    async with ActivityClient(url, queue) as client:
        if command == "show":
            limits = await client.get_limits()
            if args.json:
                print(limits.to_json())
            elif limits.empty:
                print(f"queue {queue}: no limits")
            else:
                print(f"queue {queue}: {_limits_line(limits)}")
            return 0
        await client.set_limits(wanted)
    if wanted is None or wanted.empty:
        print(f"queue {queue}: limits cleared")
    else:
        print(f"queue {queue}: {_limits_line(wanted)}")
    return 0


def _limits_from(args: argparse.Namespace) -> Limits:
    """The limits ``runnerq limits set`` describes; ``ConfigurationError`` for bad input
    (nothing is written then)."""
    flags = [
        args.rate,
        args.burst,
        args.concurrency,
        args.key_rate,
        args.key_burst,
        args.key_concurrency,
        *args.type_rate,
        *args.type_concurrency,
    ]
    given = any(f is not None for f in flags)
    if args.limits_json is not None:
        if given:
            raise ConfigurationError("give the limits as --json or as flags, not both")
        return Limits.from_json(args.limits_json)
    if not given:
        raise ConfigurationError("give the limits as --json or flags (runnerq limits clear: none)")
    doc: dict[str, Any] = {}
    _put(doc, "--rate", args.rate, args.burst, args.concurrency)
    keys: dict[str, Any] = {}
    _put(keys, "--key-rate", args.key_rate, args.key_burst, args.key_concurrency)
    if keys:
        doc["keys"] = keys
    types: dict[str, dict[str, Any]] = {}
    for flag, items in (
        ("--type-rate", args.type_rate),
        ("--type-concurrency", args.type_concurrency),
    ):
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ConfigurationError(f"{flag} takes TYPE=VALUE, not {item!r}")
            part = types.setdefault(name, {})
            if flag == "--type-rate":
                part["rate"] = _rate(flag, value)
            else:
                part["concurrency"] = _whole(flag, value)
    if types:
        doc["types"] = types
    return Limits.from_dict(doc)


def _put(
    doc: dict[str, Any], flag: str, rate: str | None, burst: str | None, concurrency: str | None
) -> None:
    """A rate, its burst and a concurrency given as flags, into their JSON form in ``doc``."""
    prefix = flag.removesuffix("rate")
    if rate is not None:
        doc["rate"] = _rate(flag, rate)
        if burst is not None:
            doc["rate"]["burst"] = _whole(f"{prefix}burst", burst)
    elif burst is not None:
        raise ConfigurationError(f"{prefix}burst goes with {flag}")
    if concurrency is not None:
        doc["concurrency"] = _whole(f"{prefix}concurrency", concurrency)


def _whole(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{flag}: {text!r} is not a whole number") from None


def _rate(flag: str, text: str) -> dict[str, Any]:
    """``N/PERIOD`` or ``N`` as a Rate's JSON form (checked by ``Limits.from_dict``)."""
    count, sep, period = text.partition("/")
    out: dict[str, Any] = {"limit": _whole(flag, count.strip())}
    if sep:
        try:
            out["period"] = _duration(period.strip())
        except (argparse.ArgumentTypeError, ValueError):
            raise ConfigurationError(f"{flag}: {period!r} is not a period (1s, 1m, 0.5)") from None
    return out


def _schedule_stats(info: ScheduleInfo) -> dict[str, Any]:
    """A schedule's line in ``runnerq stats --json`` (times in epoch seconds)."""
    state = info.state
    return {
        "name": info.name,
        "trigger": None if info.schedule is None else info.schedule.trigger.describe(),
        "suspended": info.suspended,
        "next_tick": state.next_tick,
        "last_tick": state.last_tick,
        "fired": state.fired,
        "skipped": state.skipped,
        "missed": state.missed,
        "error": info.error,
    }


def _when(t: float | None, suspended: bool = False) -> str:
    if t is None:
        return "suspended" if suspended else "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _dlq(args: argparse.Namespace) -> int:
    url, queue = _connection(args)
    async with ActivityClient(url, queue) as client:
        if args.dlq_command == "list":
            entries = await client.dead_letters(0, args.limit)
            if args.json:
                print(json.dumps([json.loads(e.encode()) for e in entries], indent=2))
            for entry in [] if args.json else entries:
                kind = entry.record.activity_type if entry.record else "?"
                print(f"{entry.id}  {kind}  [{entry.reason}]  {entry.error}")
            if not entries and not args.json:
                print("the dead-letter queue is empty")
        elif args.dlq_command == "requeue":
            if args.all == bool(args.id):
                raise ConfigurationError("give an activity id or --all")
            if args.all:
                print(f"requeued {await client.requeue_all_dead_letters()} activities")
            elif await client.requeue_dead_letter(args.id):
                print(f"requeued {args.id}")
            else:
                print(f"{args.id} is not in the dead-letter queue (or its record is corrupt)")
                return 1
        else:
            print(f"purged {await client.purge_dead_letters()} activities")
    return 0


async def _enqueue(args: argparse.Namespace) -> int:
    url, queue = _connection(args)
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise ConfigurationError(f"--payload is not JSON: {exc}") from None
    options = ActivityOption(
        priority=ActivityPriority.parse(args.priority),
        delay=args.delay,
        max_retries=args.max_retries,
        timeout=args.timeout,
        idempotency_key=args.idempotency_key,
    )
    async with ActivityClient(url, queue) as client:
        future = await client.execute_activity(args.type, payload, options)
        print(future.activity_id)
        if args.wait:
            result = await future.get_result(timeout=args.wait_timeout)
            print(json.dumps(result))
    return 0


_OWNED_BY_SPEC = (
    "schedule {name!r} is owned by the ActivityQueue's spec (the operator writes it):"
    " change spec.schedules instead, or pass --force"
)


async def _schedules(args: argparse.Namespace) -> int:
    url, queue = _connection(args)
    command = args.schedules_command
    schedule = _schedule_from(args) if command == "add" else None  # checked before connecting
    async with ActivityClient(url, queue) as client:
        store = client.schedules
        if command == "list":
            return _print_schedules(await store.list(), args.json)
        if schedule is not None:
            return await _add_schedule(store, schedule)
        name = args.name
        info = await store.get(name)
        if info is None:
            print(f"runnerq: no schedule {name!r} on queue {queue!r}", file=sys.stderr)
            return 1
        owner = None if info.schedule is None else info.schedule.owner
        if command in ("suspend", "delete") and owner == "operator" and not args.force:
            print(f"runnerq: {_OWNED_BY_SPEC.format(name=name)}", file=sys.stderr)
            return 2
        if command == "trigger":
            print(await store.trigger(name))
        elif command == "delete":
            # with the owner read above: a schedule that changed hands since is not removed
            done = await store.remove(name, owner=owner)
            if owner == "operator":
                print(f"deleted {name} (the operator writes it back while spec.schedules has it)")
            elif owner == "code":
                print(f"deleted {name} (declared in code: a worker that starts writes it back)")
            else:
                print(f"deleted {name}" if done else f"{name} was already gone")
        else:
            if not await (store.suspend(name) if command == "suspend" else store.resume(name)):
                print(f"runnerq: no schedule {name!r} on queue {queue!r}", file=sys.stderr)
                return 1
            print(f"{command}d {name}" if command == "resume" else f"suspended {name}")
    return 0


def _schedule_from(args: argparse.Namespace) -> Schedule:
    """The schedule ``runnerq schedules add`` describes; ``ConfigurationError`` for bad input
    (nothing is written then)."""
    if (args.cron is None) == (args.every is None):
        raise ConfigurationError("give exactly one of --cron and --every")
    values: dict[str, Any] = {}
    for flag in ("payload", "metadata"):
        text = getattr(args, flag)
        if text is None:
            continue
        try:
            values[flag] = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"--{flag} is not JSON: {exc}") from None
    return Schedule(
        args.name,
        args.activity_type,
        cron=args.cron,
        every=args.every,
        timezone=args.timezone,
        priority=args.priority,
        max_retries=args.max_retries,
        timeout=args.timeout,
        catch_up=args.catch_up,
        catch_up_limit=args.catch_up_limit,
        starting_deadline=args.starting_deadline,
        concurrency=args.concurrency,
        suspended=args.suspended,
        owner="api",
        **values,
    )


async def _add_schedule(store: ScheduleStore, schedule: Schedule) -> int:
    changed = await store.upsert(schedule)  # ScheduleConflictError: another owner's name
    info = await store.get(schedule.name)
    next_tick = None if info is None else info.state.next_tick
    suspended = info is not None and info.suspended
    what = "added schedule" if changed else "schedule unchanged:"
    print(f"{what} {schedule.name}, next tick {_when(next_tick, suspended)}")
    return 0


def _print_schedules(infos: list[ScheduleInfo], as_json: bool) -> int:
    if as_json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return 0
    if not infos:
        print("no schedules")
        return 0
    rows = [("NAME", "TRIGGER", "OWNER", "NEXT", "LAST", "FIRED", "SKIPPED", "MISSED")]
    for info in infos:
        s, state = info.schedule, info.state
        rows.append(
            (
                info.name,
                f"unreadable: {info.error}" if s is None else s.trigger.describe(),
                "?" if s is None else s.owner,
                _when(state.next_tick, info.suspended),
                _when(state.last_tick),
                str(state.fired),
                str(state.skipped),
                str(state.missed),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _console_settings(args: argparse.Namespace) -> Any:
    """The ``ConsoleSettings`` of ``runnerq console``'s flags (``ConfigurationError`` when
    they do not go together, before anything is served)."""
    from .console import ConsoleSettings, Role
    from .console.auth import parse_group_roles
    from .console.kube import in_cluster_available, in_cluster_config, load_kubeconfig

    default_role = args.proxy_default_role.strip().lower()
    if args.no_kube and args.kubeconfig:
        raise ConfigurationError("--no-kube goes without --kubeconfig")
    kube = None
    if args.kubeconfig:
        kube = load_kubeconfig(args.kubeconfig)
    elif not args.no_kube and in_cluster_available(os.environ):
        kube = in_cluster_config(os.environ)
    return ConsoleSettings(
        redis_url=args.redis_url or redis_url_from_env(default=DEFAULT_REDIS_URL),
        host=args.host,
        port=args.port,
        queues=tuple(args.queues),
        tokens_file=args.tokens_file,
        trusted_proxies=tuple(args.trusted_proxy),
        group_roles=parse_group_roles(args.group_role),
        proxy_default_role=None if default_role == "none" else Role.parse(default_role),
        read_only=args.read_only,
        no_auth=args.no_auth,
        sse_interval=args.live_interval,
        secure_cookies=args.secure_cookies,
        kube=kube,
        kube_namespaces=tuple(args.kube_namespaces),
        kube_events=args.kube_events,
    )


async def _console(args: argparse.Namespace) -> int:
    try:
        from .console import serve
    except ImportError as exc:  # aiohttp missing
        raise ConfigurationError(
            f"the console needs aiohttp: pip install 'runnerq[console]' ({exc})"
        ) from None
    settings = _console_settings(args)
    # SIGTERM (Kubernetes stopping the pod, where the console is PID 1 and would ignore it)
    # stops serving: open streams end, Events in flight are posted, and it exits 0.
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    terminated: list[bool] = []

    def terminate() -> None:
        terminated.append(True)
        if main_task is not None:
            main_task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        await serve(settings)
    except asyncio.CancelledError:
        if not terminated:
            raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    url = args.redis_url or resolve_redis_url()
    return await run_demo(url, args.queue or "demo", quick=args.quick)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = args.log_level or ("INFO" if args.command == "worker" else "WARNING")
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    runner = {
        "worker": _worker,
        "stats": _stats,
        "dlq": _dlq,
        "schedules": _schedules,
        "limits": _limits,
        "enqueue": _enqueue,
        "console": _console,
        "demo": _demo,
    }
    try:
        if args.command == "worker":
            return exit_guard.run(_worker(args))  # exits even if a handler will not stop
        return asyncio.run(runner[args.command](args))
    except WorkerError as exc:
        print(f"runnerq: {exc}", file=sys.stderr)
        return 1
    except RunnerQError as exc:
        print(f"runnerq: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
