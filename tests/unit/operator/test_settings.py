"""Operator settings from RUNNERQ_OPERATOR_* variables."""

from __future__ import annotations

import pytest
from runnerq_operator.registry import backoff_delay
from runnerq_operator.settings import OperatorConfig, SettingsError


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
