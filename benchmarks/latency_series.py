"""One small net timed without pause in one process and one ONNX Runtime session: the median of each 0.5 s window.

Shows how the machine's speed changes over tens of seconds with nothing else running (reports/latency_repeat.md,
"Sixth session"). ``--spinning 0`` turns off ONNX Runtime's spinning intra-op threads. After the medians, the share
of the CPUs' time that the hypervisor gave to others (steal) and that was idle, each window, from /proc/stat.

    python benchmarks/latency_series.py --net random-17 --seconds 30
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from process_offset import H, W, spec_of
from spinning_ab import session, window_median

from latency_db import workload_for
from latency_db.backends.base import export_graph


def cpu_times() -> tuple[int, int, int]:
    """(steal, idle, total) jiffies of all CPUs from /proc/stat's first line."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[7], fields[3], sum(fields)


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
    steal: list[float] = []
    idle: list[float] = []
    end = time.time() + args.seconds
    while time.time() < end:
        before = cpu_times()
        medians.append(window_median(sess, feed))
        after = cpu_times()
        total = max(after[2] - before[2], 1)
        steal.append((after[0] - before[0]) / total)
        idle.append((after[1] - before[1]) / total)
    print(f"{args.net} spinning={args.spinning}:", " ".join(f"{m:.2f}" for m in medians))
    print(f"  steal per window: max {max(steal):.1%}, mean {sum(steal) / len(steal):.1%}; "
          f"idle per window: max {max(idle):.1%}, mean {sum(idle) / len(idle):.1%}")


if __name__ == "__main__":
    main()
