"""A worker app whose import takes a while (``SLOW_IMPORT_SECONDS``, 2 by default) and says
when it starts, so a test can send SIGTERM while the app is being imported."""

from __future__ import annotations

import os
import sys
import time

from runnerq import WorkerEngine

print("importing the app", file=sys.stderr, flush=True)
time.sleep(float(os.environ.get("SLOW_IMPORT_SECONDS", "2")))
engine = WorkerEngine()
