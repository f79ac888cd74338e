"""fp32 against int8 for the reference nets and random nets: latency (ONNX Runtime, CPU) and the gain over bicubic
of the float net, of its post-training int8 graph and of its quantization-aware fine-tuned one (issue #26).

Latency: ``latency`` mode times every net's fp32 graph and its int8 QDQ graph with the onnxruntime backend's
default protocol (cpu-fast-v2, settled rows, interleaved), in a fresh latency database. Quality: ``gain`` mode
short-trains each net (TrainConfig defaults but ``--steps``), then runs ``quantize_trained`` with the QAT threshold
forced below zero so that both PTQ and QAT are measured for every net. Prints one JSON object per net.

Usage: flock -x /work/cpu.lock .venv/bin/python benchmarks/int8_nets.py latency --random 20 --db /tmp/int8.db
       flock -s /work/cpu.lock .venv/bin/python benchmarks/int8_nets.py gain --random 20 --steps 300
"""

from __future__ import annotations

import argparse
import json
import random

from search_spaces import ArchSpec, get_space

SIZE = (136, 240)  # the CPU input size, even (space-to-depth and levels)


def nets(n_random: int) -> dict[str, ArchSpec]:
    """Every sr2x reference net that tiles SIZE, then ``n_random`` random ones (seeded) that do."""
    space = get_space("sr2x")
    out = dict(space.fitting_references(SIZE)[0])
    rng = random.Random(26)
    while len(out) < len(space.fitting_references(SIZE)[0]) + n_random:
        spec = space.random_spec(rng, SIZE)
        out.setdefault(f"random-{spec.arch_id[:8]}", spec)
    return out


def latency(specs: dict[str, ArchSpec], db: str) -> None:
    """fp32 and int8 latency of every net, settled."""
    from latency_db import LatencyStore, get_backend, workload_for
    from latency_db.measure import settle_all
    from latency_db.precision import at_precision

    store = LatencyStore(db)
    backend = get_backend("onnxruntime")
    items, owners = [], []
    for name, spec in specs.items():
        for precision in ("fp32", "int8"):
            b, w = at_precision(backend, workload_for(spec, *SIZE, "fp32"), precision)
            items.append((spec, w))
            owners.append((name, precision, b))
    results = {}
    for (spec, w), (name, precision, b) in zip(items, owners):  # one backend per precision: settle each group
        results[(name, precision)] = (spec, w, b)
    for precision in ("fp32", "int8"):
        group = [(k, v) for k, v in results.items() if k[1] == precision]
        done = settle_all([(spec, w) for _, (spec, w, _) in group], group[0][1][2], store)
        for (key, _), r in zip(group, done):
            results[key] = r
    for name, spec in specs.items():
        f, q = results[(name, "fp32")], results[(name, "int8")]
        print(json.dumps({"net": name, "summary": spec.summary(), "fp32_ms": f.median_ms, "int8_ms": q.median_ms,
                          "speedup": None if not (f.ok and q.ok) else round(f.median_ms / q.median_ms, 3),
                          "fp32_settled": f.settled, "int8_settled": q.settled,
                          "background_cpus": [f.background_cpus, q.background_cpus]}), flush=True)


def gain(specs: dict[str, ArchSpec], steps: int) -> None:
    """Float, PTQ and QAT gain of every net after a short training of ``steps``."""
    from nas.training.data import load_data
    from nas.training.quantize import quantize_trained
    from nas.training.train import TrainConfig, short_train

    config = TrainConfig(steps=steps)
    data = load_data("sr", 2, config.patch_size)
    for name, spec in specs.items():
        trained = short_train(spec, data, config)
        if not trained.moved:
            print(json.dumps({"net": name, "error": "training did not move"}), flush=True)
            continue
        r = quantize_trained(spec, trained.state_dict, trained.psnr_gain_db, data, config, threshold_db=-1.0)
        print(json.dumps({"net": name, "float_gain_db": round(trained.psnr_gain_db, 4),
                          "ptq_gain_db": round(r.ptq_gain_db, 4), "qat_gain_db": round(r.qat_gain_db, 4),
                          "qat_steps": r.qat_steps, "train_s": round(trained.train_s, 1),
                          "int8_s": round(r.int8_s, 1)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("latency", "gain"))
    p.add_argument("--random", type=int, default=20)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--only", default="", help="comma list of net names (default: all)")
    p.add_argument("--db", default="/tmp/int8_bench.db")
    args = p.parse_args()
    specs = nets(args.random)
    if args.only:
        specs = {k: v for k, v in specs.items() if k in args.only.split(",")}
    if args.mode == "latency":
        latency(specs, args.db)
    else:
        gain(specs, args.steps)


if __name__ == "__main__":
    main()
