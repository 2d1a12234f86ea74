"""Bugs the chaos suite found in runnerq, each reproduced by a small run (known_bugs.py).

Open ones are strict xfail: the suite stays green while a bug is there, and this test fails
(XPASS) as soon as it is fixed, so that the fix moves the case into ``OPEN_BUGS``'s
complement. Fixed ones run as plain regression tests.
"""

from __future__ import annotations

import pytest

from tests.chaos.known_bugs import KNOWN_BUGS, OPEN_BUGS

pytestmark = pytest.mark.slow


def _reason(name: str) -> str:
    doc = KNOWN_BUGS[name].__doc__ or name
    return " ".join(doc.split())


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=_reason(name)))
        if name in OPEN_BUGS
        else name
        for name in KNOWN_BUGS
    ],
)
async def test_known_bug(name: str) -> None:
    report = await KNOWN_BUGS[name]()
    print(report.summary())
    assert report.ok, report.summary()
