"""Process-fixed or time-based? N long-lived processes time the same small nets in turn, round after round.

Each child builds the ONNX Runtime backend (the search's `fast` protocol) and times one visit (a fresh session) of a
net whenever the parent asks; the parent asks the children one after another (never two timing at once), for every
net, every round. Printed per net and child: each round's estimate over the best of all. A slow process shows as a
slow row, a slow period of the machine as a slow column.

    python benchmarks/process_interleave.py --processes 4 --rounds 10     # nothing else running
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from process_offset import H, W, spec_of

NETS = ("tiny", "random-17", "random-34")


def child() -> None:
    """Answer each net name read on stdin with one visit's estimate (ms) on stdout."""
    from latency_db import get_backend, workload_for

    backend = get_backend("onnxruntime", protocol="fast")
    specs = {name: (spec_of(name), workload_for(spec_of(name), H, W, "fp32")) for name in NETS}
    for line in sys.stdin:
        spec, workload = specs[line.strip()]
        print(json.dumps(min(backend.measure(spec, workload).visits[0].medians_ms)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    kids = [subprocess.Popen([sys.executable, __file__, "--child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True) for _ in range(args.processes)]
    estimates: dict[tuple[str, int, int], float] = {}
    t0 = time.time()
    for r in range(args.rounds):
        for name in NETS:
            for k, kid in enumerate(kids):
                assert kid.stdin is not None and kid.stdout is not None
                kid.stdin.write(name + "\n")
                kid.stdin.flush()
                estimates[(name, k, r)] = json.loads(kid.stdout.readline())
        time.sleep(1.0)
    for kid in kids:
        assert kid.stdin is not None
        kid.stdin.close()
        kid.wait()
    print(f"wall {time.time() - t0:.1f} s")
    for name in NETS:
        best = min(v for (n, _, _), v in estimates.items() if n == name)
        print(f"{name}: best {best:.3f} ms")
        for k in range(args.processes):
            print(f"  process {k}:", " ".join(f"{estimates[(name, k, r)] / best:5.2f}" for r in range(args.rounds)))


if __name__ == "__main__":
    main()
