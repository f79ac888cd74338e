"""How well the validation gain after k training steps ranks candidates against the full training.

Usage: python benchmarks/rung_spearman.py [--n 28] [--steps 500] [--every 100] [--out FILE.jsonl]
       python benchmarks/rung_spearman.py --analyze FILE.jsonl   (the table from the curves written so far)

Trains the sr2x reference nets that fit a 4 ms CPU budget and ``--n`` random sr2x specs of 40-160 MMAC
at 135x240 (the size a 4 ms budget admits on a 2-core CPU, as in benchmarks/train_defaults.py: a MAC
range stands in for measured latency here) once each at TrainConfig's defaults, with ``val_every``
so that one run records the gain at every rung. Prints, per rung, Spearman's rank correlation of the
gain at that rung with the final gain, and whether the final top 3 survive keeping the top half at the
rung; and the time of one validation. Each candidate's curve goes to ``--out`` as a JSON line.
Used to choose the rungs of the pruner (reports/pruning.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import torch
from train_defaults import small_random_specs

from nas.bench import spearman
from nas.training.data import load_data, val_pairs
from nas.training.train import TrainConfig, short_train, validate
from search_spaces import build, count, get_space


def table(curves: dict[str, dict[int, float]], val_s: list[float], steps: int, every: int) -> str:
    """The markdown table: per rung, Spearman against the final gain and the final top 3 kept by its top half."""
    moved = {n: c for n, c in curves.items() if all(math.isfinite(v) for v in c.values())}
    final = [c[steps] for c in moved.values()]
    top3 = set(sorted(moved, key=lambda n: -moved[n][steps])[:3])
    lines = [(f"{len(moved)} of {len(curves)} candidates with finite curves; one validation "
             f"{sum(val_s) / len(val_s) * 1e3:.0f} ms (mean), {max(val_s) * 1e3:.0f} ms (max)"),
             "| rung (steps) | Spearman vs final | final top 3 kept by the rung's top half |", "|---|---|---|"]
    for step in range(every, steps, every):
        at = [c[step] for c in moved.values()]
        half = set(sorted(moved, key=lambda n: -moved[n][step])[:len(moved) // 2])
        lines.append(f"| {step} | {spearman(at, final):.3f} | {len(top3 & half)} of 3 |")
    return "\n".join(lines)


def analyze(path: str, steps: int, every: int) -> None:
    """Print the table from a JSON-lines file this script wrote (also one still being written)."""
    with open(path) as fh:
        lines = [json.loads(line) for line in fh if line.strip()]
    curves = {d["name"]: {int(s): (math.nan if g is None else g) for s, g in d["val_curve"]} for d in lines}
    print(table(curves, [d["val_s"] for d in lines], steps, every))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=28, help="random specs besides the small references")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--out", default="rung_spearman.jsonl")
    ap.add_argument("--analyze", metavar="FILE", help="only print the table from a file this script wrote")
    args = ap.parse_args()
    if args.analyze:
        analyze(args.analyze, args.steps, args.every)
        return
    refs = get_space("sr2x").references()
    nets = {"tiny": refs["tiny"], "fsrcnn_small": refs["fsrcnn_small"], **small_random_specs(args.n, 16, 40, 160)}
    cfg = TrainConfig(steps=args.steps, val_every=args.every)
    data = load_data("sr", 2, cfg.patch_size)
    pairs = val_pairs(data)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, load 1m {os.getloadavg()[0]:.2f}")
    curves: dict[str, dict[int, float]] = {}
    val_s: list[float] = []
    with open(args.out, "w") as fh:
        for name, spec in nets.items():
            r = short_train(spec, data, cfg)
            net = build(spec).eval()
            t0 = time.perf_counter()
            validate(net, pairs, data.kind, data.scale, torch.device("cpu"))
            val_s.append(time.perf_counter() - t0)
            curves[name] = {int(s): g for s, g in r.val_curve}
            line = {"name": name, "arch_id": spec.arch_id, "mmac": count(spec, 135, 240).macs / 1e6,
                    "train_s": r.train_s, "moved": r.moved, "val_s": val_s[-1], "val_curve": r.val_curve}
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            print(f"{name}: {r.train_s:.1f} s, final {r.psnr_gain_db:+.3f} dB, moved {r.moved}", flush=True)
    print("\n" + table(curves, val_s, args.steps, args.every))

if __name__ == "__main__":
    main()
