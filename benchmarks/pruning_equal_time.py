"""Searches with and without a pruner at equal wall time (reports/pruning.md, issue #16).

Usage: flock /tmp/nas-cpu-bench.lock python benchmarks/pruning_equal_time.py run --out bench/eqtime.jsonl
       python benchmarks/pruning_equal_time.py table bench/eqtime.jsonl

``run`` starts, one after the other, the default ``nas search`` (evolution, 135x240 on this CPU, 500
training steps) for every budget x seed x pruner with ``--timeout`` (the same search time for each) and
more trials than fit in it, each from an empty latency database so that every run pays for its own
measurements as a fresh user's does; then, per seed at the first budget, today's default run (50 trials,
no pruner, no timeout) as the quality and time to beat. One JSON line per search: the command, the wall
time measured here, the load average and the search's own summary. ``table`` prints the Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def search(budget: float, seed: int, pruner: str, workdir: Path, timeout_s: float | None,
           trials: int) -> dict:
    """One real ``nas search --json`` in a subprocess, from an empty latency database."""
    tag = f"b{budget:g}-s{seed}-{pruner}-{'t' if timeout_s else 'n'}{trials}"
    argv = [sys.executable, "-m", "nas.cli", "search", "--budget-ms", str(budget), "--seed", str(seed),
            "--pruner", pruner, "--trials", str(trials), "--latency-db", str(workdir / f"{tag}.db"),
            "--run-dir", str(workdir / tag), "--json", "--no-report", "--no-export"]
    if timeout_s:
        argv += ["--timeout", str(timeout_s)]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{tag} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1]}")
    return {"tag": tag, "budget_ms": budget, "seed": seed, "pruner": pruner, "timeout_s": timeout_s,
            "trials_asked": trials, "argv": argv[3:], "wall_s": wall_s, "load_before": load_before,
            "load_after": os.getloadavg()[0], "summary": json.loads(proc.stdout)}


def run(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    plan = [(b, s, p, args.timeout, 1000) for b in args.budgets for s in args.seeds for p in args.pruners]
    plan += [(args.budgets[0], s, "none", None, 50) for s in args.seeds] if args.baseline else []
    with open(args.out, "a") as out:
        for i, (budget, seed, pruner, timeout_s, trials) in enumerate(plan, 1):
            row = search(budget, seed, pruner, workdir, timeout_s, trials)
            out.write(json.dumps(row) + "\n")
            out.flush()
            best = row["summary"]["best"]
            print(f"[{i}/{len(plan)}] {row['tag']}: {row['summary']['this_run']['trials']} trials in "
                  f"{row['wall_s']:.0f} s, best {best['psnr_gain_db'] if best else None}", file=sys.stderr)


def _mean_sd(xs: list[float]) -> str:
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):+.3f} ± {sd:.3f}"


def table(path: str) -> None:
    with open(path) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    print("| budget | pruner | search | seeds | trials (mean) | trials / min | trained in full | stopped at a rung | "
          "best gain dB (mean ± sd) | per seed | wall s (mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["budget_ms"], r["pruner"], r["timeout_s"], r["trials_asked"]), []).append(r)
    for (budget, pruner, timeout_s, trials), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2] is None,
                                                                                         kv[0][1])):
        rs.sort(key=lambda r: r["seed"])
        n = [r["summary"]["this_run"]["trials"] for r in rs]
        per_min = [t / (r["wall_s"] / 60) for t, r in zip(n, rs)]
        gains = [r["summary"]["best"]["psnr_gain_db"] if r["summary"]["best"] else math.nan for r in rs]
        full = [r["summary"]["n_trained"] - r["summary"].get("n_stopped", 0) for r in rs]
        stopped = [r["summary"].get("n_stopped", 0) for r in rs]
        label = f"--timeout {timeout_s:g}" if timeout_s else f"--trials {trials}"
        print(f"| {budget:g} ms | {pruner} | {label} | {','.join(str(r['seed']) for r in rs)} | "
              f"{statistics.mean(n):.1f} | {statistics.mean(per_min):.1f} | {statistics.mean(full):.1f} | "
              f"{statistics.mean(stopped):.1f} | {_mean_sd([g for g in gains if math.isfinite(g)])} | "
              f"{', '.join(f'{g:+.3f}' for g in gains)} | {statistics.mean(r['wall_s'] for r in rs):.0f} |")
    loads = [r["load_before"] for r in rows] + [r["load_after"] for r in rows]
    contended = sum(r["summary"]["this_run"]["contended_measurements"] for r in rows)
    print(f"\n1-minute load average at the searches' starts and ends: {min(loads):.2f}-{max(loads):.2f}; "
          f"contended measurements: {contended}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--workdir", default="bench/eqtime")
    r.add_argument("--timeout", type=float, default=90.0, help="search seconds for every run (default 90)")
    r.add_argument("--budgets", type=float, nargs="+", default=[4.0, 8.0])
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--pruners", nargs="+", default=["none", "sha", "hyperband"])
    r.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip today's default (50 trials, no pruner) at the first budget")
    t = sub.add_parser("table")
    t.add_argument("path")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else table(args.path)


if __name__ == "__main__":
    main()
