"""Side-by-side benchmarks of runnerq, Python peer queues and a bare-bones ceiling queue.

Run ``python -m benchmarks --help`` from the repository root (or ``make bench``).
This package imports nothing at import time: peer adapters under ``benchmarks.peers`` run in
their own virtual environments and must not pull in the harness.
"""
