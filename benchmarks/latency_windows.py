"""Where the CPU's slow spells come from: one net timed in short windows, back to back, with what the
kernel says about each window (host steal, other processes' CPU use).

``trace`` times each net for SECONDS in windows of about WINDOW_S (at least 2 runs) and writes one JSON
line per net: per window its start, median, run count, steal, others' CPU use and this process's threads'
run and run-queue wait (CPUs' worth over the window). ``report`` prints, per net, the spread of window
medians and how slow windows relate to steal. ``replay`` replays protocols on the traces: two
measurements of one net at random moments (at least 3 s apart), each of V visits of D seconds G seconds
apart, with an estimator over their window medians; it prints the share of pairs within +-10 %. Run
``trace`` alone (no other CPU benchmark or test run at the same time):

    python benchmarks/latency_windows.py trace --out /tmp/windows.jsonl --seconds 15
    python benchmarks/latency_windows.py report --out /tmp/windows.jsonl
    python benchmarks/latency_windows.py replay --out /tmp/windows.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

from latency_db import get_backend, workload_for
from latency_db.contention import snapshot
from search_spaces import get_space

WINDOW_S = 0.03


def steal_s() -> float:
    """All CPUs' steal time since boot, in seconds (time the host ran something else on our vCPUs)."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def sched_s() -> tuple[float, float]:
    """This process's threads' time on a CPU and time runnable but waiting for one (ns-precise schedstat)."""
    run = wait = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/schedstat") as fh:
                fields = fh.read().split()
        except OSError:
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


def nets(h: int, w: int, randoms: int) -> list[tuple[str, object]]:
    space = get_space("sr2x")
    refs = list(space.references().items())
    rand = [(f"random-{i}", space.random_spec(random.Random(7_000 + i), (h, w))) for i in range(randoms)]
    return refs[:4] + rand


def trace(args: argparse.Namespace) -> None:
    backend = get_backend("onnxruntime", protocol="fast")
    with open(args.out, "a") as fh:
        for name, spec in nets(args.height, args.width, args.randoms):
            session = backend.open_session(spec, workload_for(spec, args.height, args.width, "fp32"))
            try:
                for _ in range(5):
                    session.run_once()
                windows, t_end = [], time.perf_counter() + args.seconds
                while time.perf_counter() < t_end:
                    before, steal0, (run0, wait0), t0 = snapshot(), steal_s(), sched_s(), time.perf_counter()
                    samples: list[float] = []
                    while len(samples) < 2 or time.perf_counter() - t0 < WINDOW_S:
                        t = time.perf_counter()
                        session.run_once()
                        samples.append((time.perf_counter() - t) * 1e3)
                    after, steal1, (run1, wait1) = snapshot(), steal_s(), sched_s()
                    wall = time.perf_counter() - t0
                    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
                    windows.append({"t": round(t0, 4), "median_ms": statistics.median(samples), "n": len(samples),
                                    "steal_cpus": round((steal1 - steal0) / wall, 3),
                                    "others_cpus": round(max(0.0, others - (steal1 - steal0)) / wall, 3),
                                    "run_cpus": round((run1 - run0) / wall, 3),
                                    "wait_cpus": round((wait1 - wait0) / wall, 3)})
            finally:
                session.close()
            fh.write(json.dumps({"net": name, "h": args.height, "w": args.width, "windows": windows}) + "\n")
            fh.flush()


def report(args: argparse.Namespace) -> None:
    print("| net | windows | min ms | p20 ms | median ms | max/min | slow windows (>1.1x p10) | "
          "slow with steal | clean with steal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for line in Path(args.out).read_text().splitlines():
        d = json.loads(line)
        med = sorted(w["median_ms"] for w in d["windows"])
        p10, p20 = med[len(med) // 10], med[len(med) // 5]
        slow = [w for w in d["windows"] if w["median_ms"] > 1.1 * p10]
        clean = [w for w in d["windows"] if w["median_ms"] <= 1.1 * p10]
        print(f"| {d['net']} {d['h']}x{d['w']} | {len(med)} | {med[0]:.3f} | {p20:.3f} | {statistics.median(med):.3f} "
              f"| {med[-1] / med[0]:.2f} | {len(slow)} | {sum(w['steal_cpus'] > 0 for w in slow)} "
              f"| {sum(w['steal_cpus'] > 0 for w in clean)} |")


def _estimate(windows: list[dict], start: float, visit_s: float, visits: int, gap_s: float, how: str) -> float:
    medians: list[float] = []
    for v in range(visits):
        t0 = start + v * (visit_s + gap_s)
        inside = [w["median_ms"] for w in windows if t0 <= w["t"] < t0 + visit_s]
        medians += inside or [w["median_ms"] for w in windows if w["t"] >= t0][:2]
    if how == "min":
        return min(medians)
    ordered = sorted(medians)
    return statistics.median(ordered) if how == "median" else ordered[int(len(ordered) * int(how) / 100)]


def replay(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in Path(args.out).read_text().splitlines()]
    rng = random.Random(0)
    print("| visits x seconds, gap | estimator | mean share within +-10 % over nets | worst net |")
    print("|---|---|---|---|")
    for visit_s, visits, gap_s in ((0.3, 1, 0.0), (0.6, 1, 0.0), (1.0, 1, 0.0), (0.1, 3, 0.4), (0.1, 4, 0.6),
                                   (0.15, 2, 3.0), (0.1, 3, 2.0), (0.2, 3, 2.0), (0.15, 3, 5.0)):
        for how in ("median", "20", "min"):
            shares = []
            for d in rows:
                w = d["windows"]
                t0, span = w[0]["t"], visits * visit_s + (visits - 1) * gap_s
                length = w[-1]["t"] - t0 - span
                ok = n = 0
                for _ in range(400):
                    a, b = t0 + rng.uniform(0, length), t0 + rng.uniform(0, length)
                    if abs(a - b) < 3:
                        continue
                    ea, eb = (_estimate(w, x, visit_s, visits, gap_s, how) for x in (a, b))
                    n, ok = n + 1, ok + (abs(ea / eb - 1) <= 0.10)
                shares.append(ok / max(n, 1))
            print(f"| {visits} x {visit_s} s, {gap_s} s | {how if how in ('median', 'min') else 'p' + how} "
                  f"| {100 * statistics.mean(shares):.1f} % | {100 * min(shares):.1f} % |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["trace", "report", "replay"])
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--height", type=int, default=135)
    p.add_argument("--width", type=int, default=240)
    p.add_argument("--randoms", type=int, default=4)
    args = p.parse_args()
    {"trace": trace, "report": report, "replay": replay}[args.what](args)


if __name__ == "__main__":
    main()
