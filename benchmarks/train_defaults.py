"""Measure short-training time and validation gain over bicubic for the sr2x reference nets.

Usage: python benchmarks/train_defaults.py --grid steps|lr|defaults
  steps:  tiny and fsrcnn_small references and two random sr2x specs of 50-150 MMAC at 135x240
          (the size a 4 ms CPU budget admits), for several step counts and patch sizes
  lr:     the same nets at 300 steps for several learning rates
  defaults: tiny, fsrcnn_small and four random sr2x specs of 40-160 MMAC at TrainConfig's defaults
Prints one markdown table row per run with the 1-minute load average before and after it (other
processes may share the CPU). Used to pick TrainConfig's defaults.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random

import torch

from nas.training.data import load_data
from nas.training.train import TrainConfig, short_train
from search_spaces import ArchSpec, count, get_space


def small_random_specs(n: int, seed: int, lo: float, hi: float) -> dict[str, ArchSpec]:
    """``n`` random sr2x specs with lo..hi MMAC at 135x240 (the size a 4 ms CPU budget admits)."""
    space, rng, out = get_space("sr2x"), random.Random(seed), {}
    while len(out) < n:
        spec = space.random_spec(rng, (135, 240))
        if lo <= count(spec, 135, 240).macs / 1e6 <= hi:
            out[f"random-{spec.arch_id[:8]}"] = spec
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", choices=("steps", "lr", "defaults"), default="defaults")
    args = ap.parse_args()
    refs = get_space("sr2x").references()
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus")
    print("| net | MMAC@135x240 | steps | patch | batch | lr | train_s | gain_db | psnr_db | ssim | moved "
          "| load 1m before/after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    d = TrainConfig()
    small = {"tiny": refs["tiny"], "fsrcnn_small": refs["fsrcnn_small"], **small_random_specs(2, 3, 50, 150)}
    if args.grid == "steps":
        nets = small
        grid = [(s, 48, 16, d.lr) for s in (150, 300, 500)] + [(300, 32, 16, d.lr), (300, 64, 8, d.lr)]
    elif args.grid == "lr":
        nets = small
        grid = [(300, 48, 16, lr) for lr in (1e-3, 2e-3, 3e-3, 5e-3)]
    else:
        nets = {"tiny": refs["tiny"], "fsrcnn_small": refs["fsrcnn_small"], **small_random_specs(4, 1, 40, 160)}
        grid = [(d.steps, d.patch_size, d.batch_size, d.lr)]
    data = {p: load_data("sr", 2, p) for p in sorted({g[1] for g in grid})}
    for (name, spec), (steps, patch, batch, lr) in itertools.product(nets.items(), grid):
        before = os.getloadavg()[0]
        cfg = TrainConfig(steps=steps, patch_size=patch, batch_size=batch, lr=lr)
        r = short_train(spec, data[patch], cfg)
        mmac = count(spec, 135, 240).macs / 1e6
        print(f"| {name} | {mmac:.0f} | {steps} | {patch} | {batch} | {lr:g} | {r.train_s:.1f} | "
              f"{r.psnr_gain_db:+.3f} | {r.psnr_db:.2f} | {r.ssim:.4f} | {r.moved} | "
              f"{before:.2f}/{os.getloadavg()[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
