"""Does timing a candidate interleaved with the drift canary steady its latency across moments?

``run`` (one process; start it several times, minutes apart, under the CPU benchmark lock) times the
same 10 random sr2x nets at 135x240 with ONNX Runtime two ways and appends one JSON line per net to
OUT: ``plain`` (the backend's fast protocol, as the search measures) and ``interleaved`` (candidate
and canary sessions alternating run by run, same sample count; the ratio of their medians).
``report`` prints, per net, the spread (max - min) / mean across processes of the plain median, of the
candidate median taken while interleaved, and of the ratio; and the median over nets. Markdown.

    flock /tmp/nas-cpu-bench.lock python benchmarks/canary_interleave.py run --out bench/interleave.jsonl
    python benchmarks/canary_interleave.py report --out bench/interleave.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

from latency_db import get_backend, workload_for
from latency_db.canary import CANARY
from latency_db.contention import others_cpus, snapshot
from search_spaces import get_space

H, W, NETS, SEED0 = 135, 240, 10, 20_000


def nets() -> list:
    space = get_space("sr2x")
    return [space.random_spec(random.Random(SEED0 + i), (H, W)) for i in range(NETS)]


def interleaved(backend, spec, workload, runs: int) -> tuple[float, float]:
    """Median of the candidate and of the canary, timed alternately, ``runs`` samples each."""
    cand, canary = backend._open(spec, workload), backend._open(CANARY, workload_for(CANARY, H, W, "fp32"))
    try:
        feeds = ((cand.sess, cand.feed), (canary.sess, canary.feed))
        for _ in range(3):
            for sess, feed in feeds:
                sess.run(None, feed)
        a, b = [], []
        for _ in range(runs):
            for (sess, feed), out in zip(feeds, (a, b)):
                t = time.perf_counter()
                sess.run(None, feed)
                out.append((time.perf_counter() - t) * 1e3)
    finally:
        cand.close()
        canary.close()
    return statistics.median(a), statistics.median(b)


def run(args: argparse.Namespace) -> None:
    backend = get_backend("onnxruntime", protocol="fast")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    with open(args.out, "a") as fh:
        for i, spec in enumerate(nets()):
            workload = workload_for(spec, H, W, "fp32")
            before = snapshot()
            raw = backend.measure(spec, workload)
            plain = statistics.median(raw.samples_ms)
            cand, canary = interleaved(backend, spec, workload, max(10, len(raw.samples_ms)))
            fh.write(json.dumps({"process": os.getpid(), "at": stamp, "net": i, "plain_ms": plain,
                                 "interleaved_ms": cand, "canary_ms": canary, "ratio": cand / canary,
                                 "background_cpus": others_cpus(before, snapshot())}) + "\n")


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.mean(values)


def report(args: argparse.Namespace) -> None:
    with open(args.out) as fh:
        rows = [json.loads(line) for line in fh]
    procs = sorted({(r["at"], r["process"]) for r in rows})
    print(f"{len(procs)} processes: " + ", ".join(at for at, _ in procs))
    print()
    print("| net | plain median ms | plain spread | interleaved candidate spread | candidate/canary ratio spread |")
    print("|---|---|---|---|---|")
    cols: dict[str, list[float]] = {"plain": [], "inter": [], "ratio": []}
    for net in range(NETS):
        mine = [r for r in rows if r["net"] == net]
        s = {"plain": spread([r["plain_ms"] for r in mine]), "inter": spread([r["interleaved_ms"] for r in mine]),
             "ratio": spread([r["ratio"] for r in mine])}
        for k, v in s.items():
            cols[k].append(v)
        print(f"| {net} | {statistics.median(r['plain_ms'] for r in mine):.2f} | {100 * s['plain']:.1f} % | "
              f"{100 * s['inter']:.1f} % | {100 * s['ratio']:.1f} % |")
    print(f"| median over nets | | {100 * statistics.median(cols['plain']):.1f} % | "
          f"{100 * statistics.median(cols['inter']):.1f} % | {100 * statistics.median(cols['ratio']):.1f} % |")
    print()
    print(f"other processes' CPU use while timed: median "
          f"{statistics.median(r['background_cpus'] for r in rows):.2f} CPUs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("run", "report"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    run(args) if args.action == "run" else report(args)


if __name__ == "__main__":
    main()
