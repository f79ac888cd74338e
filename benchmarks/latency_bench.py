"""Benchmark of latency_db on this machine (reports/latency_db.md): cache-hit cost, cost of measuring one
small candidate with ONNX Runtime at 135x240 (export + session build + timing), and the spread of
repeated measurements of one network. Prints Markdown.

    /work/venv/bin/python benchmarks/latency_bench.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from latency_db import LatencyStore, get_backend, measure_or_get, workload_for
from latency_db.fingerprint import cpu_model, physical_cores
from search_spaces import count, get_space


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    os.environ["NAS_CACHE_DIR"] = tmp
    refs = get_space("sr2x").references()
    print(f"machine: {cpu_model()}, {physical_cores()} physical cores, load average before {os.getloadavg()}")
    print()
    print("## Cost of measuring one candidate (onnxruntime, protocol cpu-fast-v1, 135x240, fresh database)")
    print()
    print("| network | MMAC | measure_s (export + build + timing) | build_s (export + session) | median ms | CoV |")
    print("|---|---|---|---|---|---|")
    store = LatencyStore(os.path.join(tmp, "bench.db"))
    backend = get_backend("onnxruntime")
    backend.fingerprint()
    from latency_db.roofline import device_peak

    device_peak(backend, store)  # the one-off CPU probe, not part of a candidate's cost
    for name in ("tiny", "fsrcnn_small", "espcn"):
        spec = refs[name]
        r = measure_or_get(spec, workload_for(spec, 135, 240, "fp32"), backend, store)
        print(f"| {name} | {count(spec, 135, 240).macs / 1e6:.0f} | {r.measure_s:.2f} | {r.build_s:.2f} | "
              f"{r.median_ms:.2f} | {100 * r.cov:.1f}% |")
    print()
    spec = refs["espcn"]
    w = workload_for(spec, 135, 240, "fp32")
    hits = []
    for _ in range(200):
        t = time.perf_counter()
        r = measure_or_get(spec, w, backend, store)
        hits.append((time.perf_counter() - t) * 1e3)
        assert r.cached
    print(f"## Cache hit: median {statistics.median(hits):.2f} ms, p90 {sorted(hits)[179]:.2f} ms over 200 lookups "
          "(SQLite file, warm process)")
    print()
    print(f"## Spread: espcn at 135x240 measured {args.repeats} times (fresh session each), both protocols")
    print()
    print("| protocol | medians (ms) | spread (max-min)/mean of medians | CoV within a run | unstable |")
    print("|---|---|---|---|---|")
    for protocol in ("fast", "full"):
        b = get_backend("onnxruntime", protocol=protocol)
        meds, covs, unstable = [], [], 0
        for _ in range(args.repeats):
            raw = b.measure(spec, w)
            s = sorted(raw.samples_ms)
            med = statistics.median(s)
            meds.append(med)
            covs.append(statistics.pstdev(s) / statistics.fmean(s))
            unstable += raw.unstable
        spread = (max(meds) - min(meds)) / statistics.fmean(meds)
        print(f"| {b.protocol.name} | {', '.join(f'{m:.2f}' for m in meds)} | {100 * spread:.1f}% | "
              f"{100 * min(covs):.1f}-{100 * max(covs):.1f}% | {unstable}/{args.repeats} |")
    print()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
