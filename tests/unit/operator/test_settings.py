"""Operator settings from RUNNERQ_OPERATOR_* variables."""

from __future__ import annotations

import pytest
from runnerq_operator.registry import backoff_delay
from runnerq_operator.settings import (
    AUTO_PRIORITY_MAX,
    OperatorConfig,
    SettingsError,
    auto_priority,
)


def test_defaults_and_other_prefixes_ignored() -> None:
    config = OperatorConfig.from_env({"RUNNERQ_REDIS_URL": "redis://x", "HOME": "/root"})
    assert config == OperatorConfig()
    assert config.metrics_port == 9090
    assert config.peering is None


def test_values() -> None:
    config = OperatorConfig.from_env(
        {
            "RUNNERQ_OPERATOR_METRICS_PORT": "off",
            "RUNNERQ_OPERATOR_STATUS_INTERVAL": "0",
            "RUNNERQ_OPERATOR_PEERING": "runnerq",
            "RUNNERQ_OPERATOR_API_CONCURRENCY": "5",
        }
    )
    assert config.metrics_port is None
    assert config.status_interval == 0
    assert config.peering == "runnerq"
    assert config.api_concurrency == 5


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match="RUNNERQ_OPERATOR_METRIC_PORT"):
        OperatorConfig.from_env({"RUNNERQ_OPERATOR_METRIC_PORT": "1"})


def test_bad_number_is_refused() -> None:
    with pytest.raises(SettingsError, match="must be a number"):
        OperatorConfig.from_env({"RUNNERQ_OPERATOR_STATUS_INTERVAL": "soon"})


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(5, n, 60) for n in range(6)] == [5, 5, 10, 20, 40, 60]
    assert backoff_delay(120, 3, 60) == 120  # never shorter than the poll interval


def test_auto_priority_from_the_pod_name() -> None:
    config = OperatorConfig.from_env({"RUNNERQ_OPERATOR_PRIORITY": "auto"}, hostname="op-7d9-abc")
    assert config.priority == auto_priority("op-7d9-abc")
    assert 1 <= config.priority <= AUTO_PRIORITY_MAX
    again = OperatorConfig.from_env({"RUNNERQ_OPERATOR_PRIORITY": " AUTO "}, hostname="op-7d9-abc")
    assert again.priority == config.priority  # stable for a pod (e.g. a restarted container)
    # The pods of one Deployment get priorities of their own.
    names = [f"runnerq-operator-5f7c8d9b4-{i:05x}" for i in range(200)]
    assert len({auto_priority(n) for n in names}) == len(names)
    with pytest.raises(SettingsError, match="an integer or 'auto'"):
        OperatorConfig.from_env({"RUNNERQ_OPERATOR_PRIORITY": "highest"})


def test_auto_priority_prefers_kopfs_pod_id() -> None:
    env = {"RUNNERQ_OPERATOR_PRIORITY": "auto", "POD_ID": "runnerq-operator-abc"}
    config = OperatorConfig.from_env(env, hostname="other")
    assert config.priority == auto_priority("runnerq-operator-abc")
