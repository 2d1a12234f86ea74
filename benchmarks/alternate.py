"""Old code against new, by alternating runs: ``python -m benchmarks.alternate --base REF``.

Checks out ``REF`` in a scratch worktree (outside the repository), then runs runnerq's
enqueue and processing rows (``python -m benchmarks --only runnerq``) with the old and the new
code in turn, ``--rounds`` times each, starting with the other side each round, so that drift
in the machine's speed falls on both alike. Prints each row's median for both sides and the
change. The same method as the numbers in closing notes ("no benchmark row got slower").

``cpu_s`` is the CPU time of one whole run (harness, producers, worker, redis-server; the
same work on both sides), lower is better. "new higher in k/R rounds" counts the rounds in
which the new side's figure was the higher one: with R = 12, an unchanged row lands near 6.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def worktree(ref: str) -> Path:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"runnerq-bench-base-{sha}"
    if not path.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-f", str(path), sha],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    return path


def _run(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks", "--only", "runnerq", "--rows", args.rows]
    cmd += ["--n", str(args.n), "--json", str(out)]
    before = _children_cpu()
    subprocess.run(cmd, cwd=tree, check=True, stdout=subprocess.DEVNULL)
    cpu = _children_cpu() - before
    rows = json.loads(out.read_text())["rows"]
    values = {
        row["key"]: row["values"]["runnerq"]["value"]
        for row in rows
        if row["values"].get("runnerq", {}).get("value") is not None
    }
    values["cpu_s"] = cpu
    return values


def _children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far: the harness, its
    producers and workers and its redis-server. It moves with this VM's speed too (caches,
    neighbours), less than the rates; a change that holds over most rounds is a change in
    the work done."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.alternate", description=__doc__)
    ap.add_argument("--base", required=True, help="the old code: a commit, tag or branch")
    ap.add_argument("--new", help="the new code (default: this working tree)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=20000, help="activities per run")
    ap.add_argument("--rows", default="enqueue,process")
    args = ap.parse_args(argv)
    sides = {"old": worktree(args.base), "new": REPO if args.new is None else worktree(args.new)}
    results: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for round_no in range(args.rounds):
            order = ["old", "new"] if round_no % 2 == 0 else ["new", "old"]
            for side in order:
                values = _run(sides[side], args, Path(scratch) / f"{side}-{round_no}.json")
                print(
                    f"round {round_no + 1} {side}: "
                    + ", ".join(f"{k}={v:,.0f}" for k, v in values.items())
                )
                for key, value in values.items():
                    results[side].setdefault(key, []).append(value)
    new_name = args.new or "working tree"
    print(f"\nmedians of {args.rounds} rounds each (old = {args.base}, new = {new_name})")
    print(f"{'row':<16} {'old':>12} {'new':>12} {'change':>8}  new higher in")
    for key in results["new"]:
        olds, news = results["old"].get(key, []), results["new"][key]
        old = statistics.median(olds) if olds else float("nan")
        new = statistics.median(news)
        higher = sum(n > o for o, n in zip(olds, news, strict=False))
        print(
            f"{key:<16} {old:>12,.1f} {new:>12,.1f} {new / old - 1:>+8.1%}"
            f"  {higher}/{len(news)} rounds"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
