"""``python -m runnerq_operator``: run the operator (what the operator's container runs).

Watches every namespace unless ``--namespace`` is given (repeatable), and serves kopf's
liveness endpoint for the pod's probes. Settings: ``RUNNERQ_OPERATOR_*`` (see settings.py),
checked before kopf starts: a bad one exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

import kopf

from . import handlers as _handlers  # noqa: F401  (registers the handlers)
from .settings import OperatorConfig, SettingsError

__all__ = ["SETTINGS_EXIT_STATUS", "main"]

#: Exit status for settings that cannot be used (argparse's status for bad arguments).
SETTINGS_EXIT_STATUS = 2


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runnerq_operator", description=__doc__)
    parser.add_argument(
        "--namespace", action="append", default=[], help="watch only this namespace (repeatable)"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="kopf's liveness endpoint (default %(default)s); 'off' disables it",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        config = OperatorConfig.from_env(os.environ if env is None else env)
    except SettingsError as exc:
        print(f"runnerq-operator: {exc}", file=sys.stderr)
        return SETTINGS_EXIT_STATUS
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=None if args.liveness == "off" else args.liveness,
        # For the startup handler, which kopf does not tell (the peering objects to look for).
        # The settings were checked here, before kopf started.
        memo=kopf.Memo(watched_namespaces=tuple(args.namespace), config=config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
