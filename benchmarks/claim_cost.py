"""Redis-side cost of one claim with no limits, old script against new, by alternating runs.

``python -m benchmarks.claim_cost --base REF [--new REF] [--rounds 40] [--batch 1 --batch 100]``

Both versions of ``claim.lua`` (each with its own ``_prelude.lua``) are loaded into one
embedded ``redis-server``. Each round fills two like queues (ready set and records, no
configuration: no limits, not paused), one per side, then drains them in blocks of
``--block`` claims of ``--batch`` activities, the sides taking turns; before each block
``INFO commandstats`` is reset and after it the microseconds Redis spent per EVALSHA are
read. Which side goes first alternates. The time is Redis's
own (no client, no network), so it shows what the script costs every worker's claim. Prints
each batch size's median per side and the change (docs/limits.md, "Speed").
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
from pathlib import Path

import redis

from runnerq.embedded import embedded_redis
from runnerq.keys import QueueKeys
from runnerq.scripts import with_helpers

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = "runnerq/scripts"


def _source(ref: str | None, name: str) -> str:
    if ref is None:
        return (REPO / SCRIPTS / name).read_text(encoding="utf-8")
    return subprocess.run(
        ["git", "show", f"{ref}:{SCRIPTS}/{name}"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _claim_script(ref: str | None) -> str:
    """claim.lua as ``ref`` loads it: with its prelude, or the prelude's helpers it uses."""
    prelude, body = _source(ref, "_prelude.lua"), _source(ref, "claim.lua")
    if "\n--- " in prelude:
        return with_helpers(prelude, body)
    return f"{prelude}\n{body}"


def _fill(r: redis.Redis, keys: QueueKeys, n: int) -> None:
    pipe = r.pipeline(transaction=False)
    record = '{"id":"%s","type":"bench","payload":1,"priority":"normal"}'
    for start in range(0, n, 1000):
        ids = [f"a{i:08d}" for i in range(start, min(n, start + 1000))]
        pipe.hset(keys.jobs, mapping={i: record % i for i in ids})
        pipe.zadd(keys.ready, {i: float(start + j) for j, i in enumerate(ids)})
    pipe.execute()


def _claim_keys(keys: QueueKeys) -> list[str]:
    return [
        keys.ready,
        keys.inflight,
        keys.leases,
        keys.jobs,
        keys.config,
        keys.notify,
        keys.seq,
        keys.redeliveries,
    ]


def _usec_per_claim(r: redis.Redis, sha: str, keys: QueueKeys, claims: int, batch: int) -> float:
    """Redis's own microseconds per EVALSHA over ``claims`` claims of ``batch``."""
    claim_keys = _claim_keys(keys)
    r.config_resetstat()
    for _ in range(claims):
        r.evalsha(sha, len(claim_keys), *claim_keys, batch, 30000, "bench-worker")
    stats = r.info("commandstats")["cmdstat_evalsha"]
    return float(stats["usec"]) / float(stats["calls"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.claim_cost", description=__doc__)
    ap.add_argument("--base", required=True, help="the old code: a commit, tag or branch")
    ap.add_argument("--new", help="the new code (default: this working tree)")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--n", type=int, default=4000, help="activities claimed per run")
    ap.add_argument("--batch", type=int, action="append", help="activities per claim")
    ap.add_argument("--block", type=int, default=100, help="claims per turn of a side")
    args = ap.parse_args(argv)
    batches = args.batch or [1, 100]
    keys = QueueKeys("claim-cost")
    with embedded_redis() as url:
        r = redis.Redis.from_url(url, decode_responses=True)
        shas = {
            "old": r.script_load(_claim_script(args.base)),
            "new": r.script_load(_claim_script(args.new)),
        }
        times: dict[tuple[int, str], list[float]] = {}
        queues = {side: QueueKeys(f"claim-cost-{side}") for side in shas}
        for batch in batches:
            # Each round: both queues filled alike, then drained block by block, the sides
            # taking turns (who goes first alternates), so drift falls on both.
            per_block = min(args.block, max(1, args.n // batch))
            blocks = max(1, args.n // batch // per_block)
            for round_ in range(args.rounds):
                for keys in queues.values():
                    r.delete(*[getattr(keys, a) for a in ("jobs", "ready", "inflight", "leases")])
                    _fill(r, keys, args.n)
                for block in range(blocks):
                    first = (round_ + block) % 2
                    for side in ["old", "new"] if first == 0 else ["new", "old"]:
                        usec = _usec_per_claim(r, shas[side], queues[side], per_block, batch)
                        times.setdefault((batch, side), []).append(usec)
        r.close()
    print(f"claim, no limits: Redis-side us per claim, median of {args.rounds} rounds' blocks")
    print(f"{'batch':>6} {'old':>10} {'new':>10} {'change':>8}")
    for batch in batches:
        old = statistics.median(times[(batch, "old")])
        new = statistics.median(times[(batch, "new")])
        print(f"{batch:>6} {old:>10.2f} {new:>10.2f} {100 * (new - old) / old:>+7.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
