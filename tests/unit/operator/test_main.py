"""``python -m runnerq_operator`` checks its settings before kopf starts."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
import runnerq_operator.__main__ as entry
from runnerq_operator.settings import OperatorConfig


def test_a_bad_setting_exits_with_one_line_before_kopf_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(**_: Any) -> None:
        raise AssertionError("kopf must not start with bad settings")

    monkeypatch.setattr(kopf, "run", never)
    status = entry.main([], env={"RUNNERQ_OPERATOR_STATUS_INTERVL": "3"})
    assert status == entry.SETTINGS_EXIT_STATUS != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("runnerq-operator: unknown settings: RUNNERQ_OPERATOR_STATUS_INTERVL")


def test_good_settings_reach_the_startup_handler_through_the_memo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: seen.update(kwargs))
    status = entry.main(
        ["--namespace", "ns1", "--liveness", "off"],
        env={"RUNNERQ_OPERATOR_STATUS_INTERVAL": "3"},
    )
    assert status == 0
    memo = seen["memo"]
    assert memo.config == OperatorConfig(status_interval=3.0)
    assert memo.watched_namespaces == ("ns1",)
    assert seen["namespaces"] == ["ns1"] and seen["liveness_endpoint"] is None
