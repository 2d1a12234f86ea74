"""The e2e operator tests' check for refusals in a log: a 403 status or a Forbidden error,
not any number that happens to contain 403 (a random port once failed a CI run)."""

from __future__ import annotations

import pytest

from tests.e2e.operator_harness import refused


@pytest.mark.parametrize(
    "line",
    [
        "INFO runnerq_operator.runtime: operator metrics on port 40341",
        "2026-12-01 03:40:12,403 INFO kopf.activities.probe: Activity 'autoscaler' succeeded.",
        '"GET /healthz HTTP/1.1" 200 356',
        "uid 1403, resourceVersion 4030",
    ],
)
def test_numbers_with_403_in_them_are_not_refusals(line: str) -> None:
    assert not refused(line)


@pytest.mark.parametrize(
    "line",
    [
        "kopf._cogs.clients.errors.APIForbiddenError: ('deployments.apps is forbidden', {})",
        "aiohttp.client_exceptions.ClientResponseError: 403, message='Forbidden'",
        '"PATCH /apis/apps/v1/namespaces/x/deployments/w HTTP/1.1" 403 120',
        "status 403 while patching",
    ],
)
def test_refusals_are_found(line: str) -> None:
    assert refused(line)
