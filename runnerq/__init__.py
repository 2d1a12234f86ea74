"""runnerq: a Redis-backed activity queue and worker engine.

Enqueue with an ``ActivityClient`` (or an engine's ``get_activity_executor()``), run handlers
with a ``WorkerEngine``, await results through ``ActivityFuture``; declare periodic work with
``WorkerEngine.schedule`` or ``ActivityClient.schedules`` (a ``ScheduleStore``).
"""

from .client import ActivityBuilder, ActivityClient
from .config import BackoffPolicy, QueueSettings, RedisConfig, WorkerSettings
from .context import ActivityContext, CancelToken
from .engine import WorkerEngine, WorkerEngineBuilder
from .env import redis_url_from_env
from .errors import (
    ActivityCancelledError,
    ActivityDeadLetteredError,
    ActivityError,
    ActivityNotFoundError,
    ActivityTimedOutError,
    BulkEnqueueError,
    BulkEnqueueUnavailableError,
    ConfigurationError,
    DuplicateHandlerError,
    NonRetryableError,
    RateLimitedError,
    RedisUnavailableError,
    ResultTimeoutError,
    RetryableError,
    RunnerQError,
    ScheduleConflictError,
    SerializationError,
    WorkerError,
    non_retryable,
)
from .future import ActivityFuture
from .handler import ActivityHandler
from .history import ActivityEvent, Progress, Throughput
from .limits import KeyLimit, Limits, LimitStats, Rate, TypeLimit
from .metrics import InMemoryMetrics, MetricsSink, NoopMetrics, ScheduleMetricsSink
from .options import ActivityOption
from .presence import WorkerInfo, list_queues
from .priority import ActivityPriority
from .record import DeadLetterEntry
from .schedule import Schedule, ScheduleState
from .schedules import ScheduleInfo, ScheduleStore
from .stats import QueueStats

ActivityExecutor = ActivityClient

__version__ = "0.1.0"

__all__ = [
    "ActivityBuilder",
    "ActivityCancelledError",
    "ActivityClient",
    "ActivityContext",
    "ActivityDeadLetteredError",
    "ActivityError",
    "ActivityEvent",
    "ActivityExecutor",
    "ActivityFuture",
    "ActivityHandler",
    "ActivityNotFoundError",
    "ActivityOption",
    "ActivityPriority",
    "ActivityTimedOutError",
    "BackoffPolicy",
    "BulkEnqueueError",
    "BulkEnqueueUnavailableError",
    "CancelToken",
    "ConfigurationError",
    "DeadLetterEntry",
    "DuplicateHandlerError",
    "InMemoryMetrics",
    "KeyLimit",
    "LimitStats",
    "Limits",
    "MetricsSink",
    "NonRetryableError",
    "NoopMetrics",
    "Progress",
    "QueueSettings",
    "QueueStats",
    "Rate",
    "RateLimitedError",
    "RedisConfig",
    "RedisUnavailableError",
    "ResultTimeoutError",
    "RetryableError",
    "RunnerQError",
    "Schedule",
    "ScheduleConflictError",
    "ScheduleInfo",
    "ScheduleMetricsSink",
    "ScheduleState",
    "ScheduleStore",
    "SerializationError",
    "Throughput",
    "TypeLimit",
    "WorkerEngine",
    "WorkerEngineBuilder",
    "WorkerError",
    "WorkerInfo",
    "WorkerSettings",
    "list_queues",
    "non_retryable",
    "redis_url_from_env",
]
