"""ONNX Runtime's spinning intra-op threads on and off, one session each in one process, 0.5 s windows alternated.

Prints each session's window medians in order; a slow period of the machine hits both sessions' windows at the same
time, a slow mode of one setting only its own (reports/latency_repeat.md, "Sixth session").

    python benchmarks/spinning_ab.py --net random-17 --seconds 120     # nothing else running
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from process_offset import H, W, spec_of

from latency_db import workload_for
from latency_db.backends.base import export_graph


def session(graph: bytes, spinning: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])


def window_median(sess: ort.InferenceSession, feed: dict, seconds: float = 0.5) -> float:
    """Run ``sess`` back to back for ``seconds``; the median run in ms."""
    runs: list[float] = []
    w0 = time.perf_counter()
    while time.perf_counter() - w0 < seconds:
        t = time.perf_counter()
        sess.run(None, feed)
        runs.append((time.perf_counter() - t) * 1e3)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="random-17")
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    spec = spec_of(args.net)
    workload = workload_for(spec, H, W, "fp32")
    graph = export_graph(spec, workload)
    sessions = {"1": session(graph, "1"), "0": session(graph, "0")}
    x = np.random.default_rng(0).random(workload.shape, dtype=np.float32)
    medians: dict[str, list[float]] = {"1": [], "0": []}
    end = time.time() + args.seconds
    while time.time() < end:
        for spinning, sess in sessions.items():
            feed = {sess.get_inputs()[0].name: x}
            for _ in range(5):  # warm the session's threads after the other session's window
                sess.run(None, feed)
            medians[spinning].append(window_median(sess, feed))
    for spinning, ms in medians.items():
        best = min(ms)
        slow = sum(m > 1.1 * best for m in ms)
        print(f"{args.net} spinning={spinning}: best {best:.3f} median {statistics.median(ms):.3f} "
              f"windows >10 % above best {slow}/{len(ms)}")
        print("   ", " ".join(f"{m:.2f}" for m in ms))


if __name__ == "__main__":
    main()
