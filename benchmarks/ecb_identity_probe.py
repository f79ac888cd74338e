"""Probe: does a net's bf16 training loss come from the identity branch folded into a kernel rounded to bf16?

Under ``torch.autocast`` a re-parameterized conv's collapsed kernel is rounded to bf16; an identity's centre tap near 1
then moves in steps of 2^-7, coarser than the learned update it carries. Per seed, three full short trainings at
TrainConfig's defaults: fp32, bf16 as the search trains it (the identity folded into the kernel), and bf16 with the
identity added to the conv's output instead (``ReparamConv.forward`` patched by this probe only). Prints each gain and
its difference from fp32 (reports/training_speed.md, "Session 10").

Usage: python benchmarks/ecb_identity_probe.py ecbsr_m4c8 0,1,2,3,4,5
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch
import torch.nn.functional as F

from nas.training import reparam
from nas.training.data import load_data
from nas.training.train import TrainConfig, short_train
from search_spaces import get_space


def added_identity_forward(self: reparam.ReparamConv, x: torch.Tensor) -> torch.Tensor:
    """Under autocast, the conv without its identity branch, plus its input; otherwise the conv as trained."""
    split = self.identity and torch.is_autocast_enabled(x.device.type)
    if split:
        self.identity = False  # collapsed() then leaves the identity's kernel out
    try:
        weight, bias = self.collapsed()
    finally:
        if split:
            self.identity = True
    y = F.conv2d(x, weight, bias, self.stride, self.padding)
    return y + x if split else y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("net", help="a reference net of sr2x (e.g. ecbsr_m4c8)")
    ap.add_argument("seeds", help="training seeds, comma-separated")
    args = ap.parse_args()
    space = get_space("sr2x")
    spec = (space.references() | space.modern_references())[args.net]
    config = TrainConfig()
    data = load_data("sr", 2, config.patch_size)
    folded_forward = reparam.ReparamConv.forward
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = replace(config, seed=seed)
        fp32 = short_train(spec, data, cfg).psnr_gain_db
        folded = short_train(spec, data, replace(cfg, train_dtype="bf16")).psnr_gain_db
        reparam.ReparamConv.forward = added_identity_forward  # type: ignore[method-assign]
        try:
            added = short_train(spec, data, replace(cfg, train_dtype="bf16")).psnr_gain_db
        finally:
            reparam.ReparamConv.forward = folded_forward  # type: ignore[method-assign]
        rows.append((fp32, folded, added))
        print(f"{args.net} seed {seed}: fp32 {fp32:+.4f} bf16 {folded:+.4f} ({folded - fp32:+.4f}) "
              f"bf16 with the identity added {added:+.4f} ({added - fp32:+.4f})", flush=True)
    print(f"{args.net} means: bf16 - fp32 {statistics.mean(b - a for a, b, _ in rows):+.4f}, "
          f"bf16 with the identity added - fp32 {statistics.mean(c - a for a, _, c in rows):+.4f}")


if __name__ == "__main__":
    main()
