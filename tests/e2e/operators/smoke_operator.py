"""A minimal kopf operator for the control-plane smoke test.

It mirrors each Widget's ``spec.size`` into ``status.observedSize`` (through the status
subresource), so a test sees both that kopf reached the API server and that its patch landed.
Run by ``kopf.testing.KopfRunner(["run", "-A", "--standalone", __file__])``.
"""

from __future__ import annotations

from typing import Any

import kopf

GROUP = "e2e.runnerq.io"
PLURAL = "widgets"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # no Events: nothing reads them here
    # Short watch timeouts so that stopping the runner does not wait for a long-poll to end.
    settings.watching.server_timeout = 10
    settings.watching.client_timeout = 15


@kopf.on.create(GROUP, PLURAL)
@kopf.on.update(GROUP, PLURAL, field="spec.size")
def mirror_size(spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    patch.status["observedSize"] = spec.get("size")
    patch.status["phase"] = "Reconciled"


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The test's kubeconfig (KUBECONFIG): the test runs this operator with a registry of its
    own, which holds none of kopf's default login handlers."""
    return kopf.login_with_kubeconfig(**kwargs)
