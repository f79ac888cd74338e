"""Is a small net's CPU latency set per process? The same nets timed in several fresh processes, two visits each.

Each child process builds the ONNX Runtime backend (the search's `fast` protocol) and, for every net, times one
visit, waits the protocol's gap and times a second (each visit a fresh session, as in a search). The children run
one after another. The report compares, per net, the spread of the visit estimates within a process with the spread
between processes: if a slow process makes both of its visits slow, only visits in more than one process can
remove that offset (reports/latency_repeat.md, "Second session").

    python benchmarks/process_offset.py --processes 8 --out /tmp/offset.jsonl   # nothing else running
    python benchmarks/process_offset.py --report --out /tmp/offset.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from latency_db.candidates import Candidate
from search_spaces import get_space

H, W = 135, 240
SEED0 = 31_000  # the random nets of benchmarks/latency_repeat.py (random-i: seed SEED0 + i)
NETS = ("tiny", "ecbsr_m4c8", "fsrcnn_small", "random-1", "random-17", "random-34", "random-43", "random-5")


def spec_of(name: str) -> Candidate:
    space = get_space("sr2x")
    if name.startswith("random-"):
        return space.random_spec(random.Random(SEED0 + int(name.split("-")[1])), (H, W))
    return {**space.references(), **space.modern_references()}[name]


def child() -> None:
    """Time every net twice (two sessions, the protocol's gap apart) and print one JSON line per net."""
    from latency_db import get_backend, workload_for

    backend = get_backend("onnxruntime", protocol="fast")
    gap = backend.protocol.windows.gap_s
    for name in NETS:
        spec = spec_of(name)
        workload = workload_for(spec, H, W, "fp32")
        visits = []
        for i in range(2):
            if i:
                time.sleep(gap)
            raw = backend.measure(spec, workload)
            visits.append(min(raw.visits[0].medians_ms))
        print(json.dumps({"net": name, "visits_ms": visits}), flush=True)


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    for k in range(args.processes):
        proc = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, check=True)
        with out.open("a") as fh:
            for line in proc.stdout.splitlines():
                fh.write(json.dumps({"process": k, **json.loads(line)}) + "\n")
        print(f"process {k + 1}/{args.processes} done", file=sys.stderr)


def report(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in Path(args.out).read_text().splitlines()]
    print("| net | processes | median ms | within a process: median |v1-v2| | between processes: max/min of "
          "process minima | processes > 10 % above the best |")
    print("|---|---|---|---|---|---|")
    for name in NETS:
        mine = [r for r in rows if r["net"] == name]
        if not mine:
            continue
        per_proc = [min(r["visits_ms"]) for r in mine]
        within = statistics.median(abs(r["visits_ms"][0] - r["visits_ms"][1]) / min(r["visits_ms"]) for r in mine)
        best = min(per_proc)
        slow = sum(p > 1.1 * best for p in per_proc)
        print(f"| {name} | {len(mine)} | {statistics.median(per_proc):.3f} | {within:.1%} | "
              f"{max(per_proc) / best:.2f}x | {slow} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--out", default="process_offset.jsonl")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.child:
        child()
    elif args.report:
        report(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
