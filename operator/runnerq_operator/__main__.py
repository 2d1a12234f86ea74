"""``python -m runnerq_operator``: run the operator (what the operator's container runs).

Watches every namespace unless ``--namespace`` is given (repeatable), and serves kopf's
liveness endpoint for the pod's probes. Settings: ``RUNNERQ_OPERATOR_*`` (see settings.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import kopf

from . import handlers as _handlers  # noqa: F401  (registers the handlers)

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
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
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=None if args.liveness == "off" else args.liveness,
        # For the startup handler, which kopf does not tell (the peering objects to look for).
        memo=kopf.Memo(watched_namespaces=tuple(args.namespace)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
