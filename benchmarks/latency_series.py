"""One small net timed without pause in one process and one ONNX Runtime session: the median of each 0.5 s window.

Shows how the machine's speed changes over tens of seconds with nothing else running (reports/latency_repeat.md,
"Sixth session"). ``--spinning 0`` turns off ONNX Runtime's spinning intra-op threads.

    python benchmarks/latency_series.py --net random-17 --seconds 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from process_offset import H, W, spec_of
from spinning_ab import session, window_median

from latency_db import workload_for
from latency_db.backends.base import export_graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="random-17")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--spinning", choices=("0", "1"), default="1")
    args = parser.parse_args()
    spec = spec_of(args.net)
    workload = workload_for(spec, H, W, "fp32")
    sess = session(export_graph(spec, workload), args.spinning)
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).random(workload.shape, dtype=np.float32)}
    medians: list[float] = []
    end = time.time() + args.seconds
    while time.time() < end:
        medians.append(window_median(sess, feed))
    print(f"{args.net} spinning={args.spinning}:", " ".join(f"{m:.2f}" for m in medians))


if __name__ == "__main__":
    main()
