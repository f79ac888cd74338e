"""Probe: does a net's bf16 training loss come from the ECB collapse running in bf16 under autocast?

Per seed, three full short trainings at TrainConfig's defaults: fp32, bf16 as the search trains it, and bf16 with
``ReparamConv.collapsed`` (the einsums that sum the branch weights) forced to fp32 by a patch local to this probe.
Prints each gain and its difference from fp32 (reports/training_speed.md, session 9).

Usage: python benchmarks/ecb_collapse_probe.py ecbsr_m4c8 0,1,2,3,4,5
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

from nas.training import reparam
from nas.training.data import load_data
from nas.training.train import TrainConfig, short_train
from search_spaces import get_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("net", help="a reference net of sr2x (e.g. ecbsr_m4c8)")
    ap.add_argument("seeds", help="training seeds, comma-separated")
    args = ap.parse_args()
    space = get_space("sr2x")
    spec = (space.references() | space.modern_references())[args.net]
    config = TrainConfig()
    data = load_data("sr", 2, config.patch_size)
    original = reparam.ReparamConv.collapsed

    def fp32_collapse(self: reparam.ReparamConv) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cpu", enabled=False):
            return original(self)

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = replace(config, seed=seed)
        fp32 = short_train(spec, data, cfg).psnr_gain_db
        bf16 = short_train(spec, data, replace(cfg, train_dtype="bf16")).psnr_gain_db
        reparam.ReparamConv.collapsed = fp32_collapse
        try:
            patched = short_train(spec, data, replace(cfg, train_dtype="bf16")).psnr_gain_db
        finally:
            reparam.ReparamConv.collapsed = original
        rows.append((fp32, bf16, patched))
        print(f"{args.net} seed {seed}: fp32 {fp32:+.4f} bf16 {bf16:+.4f} ({bf16 - fp32:+.4f}) "
              f"bf16 with an fp32 collapse {patched:+.4f} ({patched - fp32:+.4f})", flush=True)
    print(f"{args.net} means: bf16 - fp32 {statistics.mean(b - a for a, b, _ in rows):+.4f}, "
          f"bf16 with an fp32 collapse - fp32 {statistics.mean(c - a for a, _, c in rows):+.4f}")


if __name__ == "__main__":
    main()
