"""The ``runnerq`` command: run a worker, look at a queue, manage its dead letters, enqueue,
and run the demo.

Connection settings come from flags, else the environment (``RUNNERQ_REDIS_URL``, or the
operator ConfigMap's ``RUNNERQ_REDIS_URL_TEMPLATE`` with ``RUNNERQ_REDIS_PASSWORD``: see
``runnerq.env``; ``RUNNERQ_QUEUE``, ``RUNNERQ_MAX_WORKERS``, ``RUNNERQ_METRICS_PORT``), else
the defaults. This module and ``runnerq.env`` are the only ones that read the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import exit_guard
from .client import ActivityClient
from .config import DEFAULT_QUEUE, DEFAULT_REDIS_URL
from .engine import WorkerEngine, WorkerEngineBuilder
from .env import redis_url_from_env, resolve_redis_url
from .errors import ConfigurationError, RunnerQError, WorkerError
from .options import ActivityOption
from .priority import ActivityPriority

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

    demo = sub.add_parser(
        "demo", parents=[common], help="run the demo (embedded Redis if none given)"
    )
    demo.add_argument("--quick", action="store_true", help="shorter delays")
    return parser


def _connection(args: argparse.Namespace) -> tuple[str, str]:
    url = args.redis_url or redis_url_from_env(default=DEFAULT_REDIS_URL)
    queue = args.queue or _env("RUNNERQ_QUEUE") or DEFAULT_QUEUE
    return url, queue


async def _worker(args: argparse.Namespace) -> int:
    from .health import HealthServer

    engine = load_engine(args.app)
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
        engine.configure(metrics=_with_prometheus(engine))  # after the queue name is final
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


def _with_prometheus(engine: WorkerEngine) -> Any:
    from .metrics import FanoutMetrics, NoopMetrics
    from .prometheus import PrometheusMetrics

    queue = engine.queue_name
    prom = PrometheusMetrics(queue=queue)
    if isinstance(engine.metrics, NoopMetrics):
        return prom
    return FanoutMetrics(engine.metrics, prom)


async def _stats(args: argparse.Namespace) -> int:
    url, queue = _connection(args)
    async with ActivityClient(url, queue) as client:
        stats = await client.get_stats()
    if args.json:
        print(json.dumps(stats.as_dict(), indent=2))
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
    return 0


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
    runner = {"worker": _worker, "stats": _stats, "dlq": _dlq, "enqueue": _enqueue, "demo": _demo}
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
