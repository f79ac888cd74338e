"""Re-parameterized training against plain training: step time and validation gain, per reference net.

Usage: flock /tmp/nas-cpu-bench.lock python benchmarks/reparam_bench.py [--tasks sr2x,denoise]
       [--steps 500] [--seeds 0,1] [--kinds none,linear,ecb] [--time-steps 30] [--refs a,b]
       [--arch LABEL=path/to/arch.json ...] [--device cpu] [--json OUT]

For every reference net of each task (the classic ones and the modern ones): (1) the time of one
training step (forward, backward, Adam) on a fixed batch at TrainConfig's batch and patch size, median
over ``--time-steps`` after warm-up, for the plain net, each kind at collapsed cost, and each kind run
branch by branch (the naive way), taking turns step by step; (2) a short training per kind and seed and
its validation PSNR gain over the baseline. Prints markdown tables (ratios to plain; gains and their
per-seed difference to plain) and the 1-minute load average.
Choose the default kind from it; write the numbers to reports/reparam.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from nas.training.data import load_data
from nas.training.reparam import KINDS, ReparamConv, reparameterize
from nas.training.train import TrainConfig, param_groups, short_train
from search_spaces import ArchSpec, build, get_space, load_spec


def step_times(spec: ArchSpec, kinds: list[str], n: int, device: torch.device) -> dict[str, float]:
    """Median ms of one training step of ``spec`` per variant: each kind at collapsed cost, and
    ``<kind>-naive`` with every branch run on its own. The variants take turns step by step, so a
    change in the machine's load falls on all of them alike."""
    cfg = TrainConfig()
    p, s = cfg.patch_size, spec.scale
    x = torch.rand(cfg.batch_size, 3, p, p, device=device)
    y = torch.rand(cfg.batch_size, 3, p * s, p * s, device=device)
    runs = {}
    for variant in [*kinds, *(f"{k}-naive" for k in kinds if k != "none")]:
        torch.manual_seed(0)
        net = reparameterize(build(spec), variant.removesuffix("-naive"), keep=False).to(device).train()
        if variant.endswith("-naive"):
            for m in net.modules():
                if isinstance(m, ReparamConv):
                    m.forward = m.forward_expanded  # type: ignore[method-assign]
        runs[variant] = (net, torch.optim.Adam(param_groups(net, cfg.lr, cfg.lr_fan_in), lr=cfg.lr), [])
    order = list(runs.values())
    for i in range(n + 5):  # 5 warm-up rounds; each round starts one variant later
        for net, opt, times in order[i % len(order):] + order[:i % len(order)]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = (net(x) - y).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 5:
                times.append((time.perf_counter() - t0) * 1e3)
    return {variant: statistics.median(times) for variant, (_, _, times) in runs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="sr2x,denoise")
    ap.add_argument("--steps", type=int, default=500, help="training steps per run")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--time-steps", type=int, default=30, help="timed training steps per step-time measurement")
    ap.add_argument("--refs", default="", help="only these reference names (comma-separated; default all)")
    ap.add_argument("--arch", action="append", default=[], metavar="LABEL=ARCH_JSON",
                    help="also (with --refs none: only) this network, e.g. a bench winner's arch.json; repeatable")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, help="also write every number to this JSON file")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    if kinds[0] != "none" or any(k not in KINDS for k in kinds):
        ap.error(f"--kinds must start with none and use only {', '.join(KINDS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    device = torch.device(args.device)
    only = set(filter(None, args.refs.split(",")))
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, device {device}, load 1m "
          f"{os.getloadavg()[0]:.2f}")
    extra: dict[str, ArchSpec] = {}
    for item in args.arch:
        label, _, path = item.rpartition("=")
        extra[label or path] = load_spec(path)
    rows = []
    for task in args.tasks.split(","):
        space = get_space(task)
        data = load_data(space.kind, space.scale, TrainConfig().patch_size)
        nets = space.references() | space.modern_references()
        nets = {n: s for n, s in nets.items() if not only or n in only}
        nets |= {n: s for n, s in extra.items() if s.space == space.kind and s.scale == space.scale}
        for name, spec in nets.items():
            times = step_times(spec, kinds, args.time_steps, device)
            row: dict = {"task": task, "net": name, "arch_id": spec.arch_id, "summary": spec.summary(),
                         "step_ms": {k: times[k] for k in kinds},
                         "naive_ms": {k: times[f"{k}-naive"] for k in kinds[1:]}, "gain_db": {}, "train_s": {}}
            for kind in kinds:
                gains, secs = [], []
                for seed in seeds:
                    r = short_train(spec, data, TrainConfig(steps=args.steps, seed=seed, reparam=kind), device=device)
                    gains.append(r.psnr_gain_db)
                    secs.append(r.train_s)
                row["gain_db"][kind], row["train_s"][kind] = gains, secs
                print(f"# {task} {name} {kind}: step {row['step_ms'][kind]:.1f} ms, gains "
                      + " ".join(f"{g:+.3f}" for g in gains) + f", load 1m {os.getloadavg()[0]:.2f}", flush=True)
            rows.append(row)

    print("\n| task | net | plain step ms | " + " | ".join(f"{k} step / plain (naive)" for k in kinds[1:]) + " |")
    print("|---|---|---|" + "---|" * (len(kinds) - 1))
    for r in rows:
        plain = r["step_ms"]["none"]
        cells = [f"{r['step_ms'][k] / plain:.2f} ({r['naive_ms'][k] / plain:.2f})" for k in kinds[1:]]
        print(f"| {r['task']} | {r['net']} | {plain:.1f} | " + " | ".join(cells) + " |")
    print("\n| task | net | " + " | ".join(f"{k} gain dB (seeds)" for k in kinds)
          + " | " + " | ".join(f"{k} - none" for k in kinds[1:]) + " |")
    print("|---|---|" + "---|" * (2 * len(kinds) - 1))
    for r in rows:
        gains = [f"{statistics.mean(r['gain_db'][k]):+.3f} (" + " ".join(f"{g:+.2f}" for g in r["gain_db"][k]) + ")"
                 for k in kinds]
        diffs = [f"{statistics.mean(a - b for a, b in zip(r['gain_db'][k], r['gain_db']['none'])):+.3f}"
                 for k in kinds[1:]]
        print(f"| {r['task']} | {r['net']} | " + " | ".join(gains + diffs) + " |")
    print("\nmean over nets and seeds of (kind - none) gain, and the worst step-time ratio:")
    for k in kinds[1:]:
        d = [a - b for r in rows for a, b in zip(r["gain_db"][k], r["gain_db"]["none"])]
        worst = max(r["step_ms"][k] / r["step_ms"]["none"] for r in rows)
        print(f"  {k}: {statistics.mean(d):+.3f} dB (min {min(d):+.3f}, max {max(d):+.3f}); "
              f"step ratio worst {worst:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
