"""Do the machine's slow spells hit every small net at once, and does a fixed probe net see them?

One process holds ONNX Runtime sessions of a few 135x240 nets (2 threads, as the backend times them; and one
1-thread session) and times them in turn, a short window each, for ``--seconds``. Prints, per net, its best window
and how many windows ran more than 10 % above it; then, for the probe (the drift canary's net at 135x240), how well
"the probe's window is slow" predicts "the next net's window is slow" (reports/latency_repeat.md, "Seventh session").
``--out`` keeps every window (time, net, median) as JSON lines for replays.

    python benchmarks/spell_probe.py --seconds 180 --out spells.jsonl      # nothing else running
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort
from process_offset import H, W, spec_of
from spinning_ab import window_median

from latency_db import workload_for
from latency_db.backends.base import export_graph
from latency_db.canary import CANARY

NETS = ("tiny", "random-17", "random-34", "random-1")
SLOW = 1.10


def session(graph: bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--window", type=float, default=0.1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    named = [("probe", CANARY, 2)] + [(n, spec_of(n), 2) for n in NETS] + [("random-17/1t", spec_of("random-17"), 1)]
    sessions = []
    for name, spec, threads in named:
        workload = workload_for(spec, H, W, "fp32")
        sess = session(export_graph(spec, workload), threads)
        x = np.random.default_rng(0).random(workload.shape, dtype=np.float32)
        sessions.append((name, sess, {sess.get_inputs()[0].name: x}))
    windows: list[tuple[float, str, float]] = []
    end = time.time() + args.seconds
    while time.time() < end:
        for name, sess, feed in sessions:
            for _ in range(3):  # warm runs: the other sessions evicted this one's caches
                sess.run(None, feed)
            windows.append((time.time(), name, window_median(sess, feed, args.window)))
    if args.out:
        with open(args.out, "a") as fh:
            for at, name, ms in windows:
                fh.write(json.dumps({"at": round(at, 3), "net": name, "ms": ms}) + "\n")
    best = {name: min(ms for _, n, ms in windows if n == name) for name, _, _ in named}
    for name, _, _ in named:
        ms = [m for _, n, m in windows if n == name]
        slow = sum(m > SLOW * best[name] for m in ms)
        print(f"{name:>14}: best {best[name]:.3f} ms, median {statistics.median(ms):.3f}, "
              f"windows >10 % above best {slow}/{len(ms)}")
    # the probe's verdict against each net's next window: slow/fast agreement
    table = {"both slow": 0, "both fast": 0, "probe slow only": 0, "net slow only": 0}
    probe_slow = None
    for _, name, ms in windows:
        if name == "probe":
            probe_slow = ms > SLOW * best["probe"]
            continue
        if probe_slow is None or name.endswith("/1t"):
            continue
        net_slow = ms > SLOW * best[name]
        key = ("both slow" if net_slow else "probe slow only") if probe_slow else \
            ("net slow only" if net_slow else "both fast")
        table[key] += 1
    print("probe verdict vs the nets' windows of the same round:", table)
    print("timeline (probe ratio to best, one per round):",
          " ".join(f"{ms / best['probe']:.2f}" for _, n, ms in windows if n == "probe"))


if __name__ == "__main__":
    main()
