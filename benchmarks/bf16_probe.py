"""Probe: where does a net's bf16 training loss come from? One patch of the re-parameterized conv, against fp32.

Per seed, three full short trainings at TrainConfig's defaults: fp32, bf16 as the search trains it, and bf16 with one
patch of ``ReparamConv`` local to this probe (reports/training_speed.md, sessions 9-11):

- ``fp32-collapse``: the collapse (the einsums that sum the branch weights into one kernel) forced to fp32;
- ``folded-identity``: bf16 recipe 1, the identity branch folded into the kernel autocast rounds to bf16, where a
  centre tap near 1 moves in steps of 2^-7 and loses the small update it carries (recipe 2, the search's since
  session 11, adds the identity to the conv's output instead: nas/training/reparam.py).

Prints each gain and its difference from fp32.

Usage: python benchmarks/bf16_probe.py {fp32-collapse,folded-identity} ecbsr_m4c8 0,1,2,3,4,5
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

ORIGINAL = {"collapsed": reparam.ReparamConv.collapsed, "forward": reparam.ReparamConv.forward}


def fp32_collapse(self: reparam.ReparamConv, with_identity: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The collapse outside autocast: the branch sums in fp32."""
    with torch.autocast("cpu", enabled=False):
        return ORIGINAL["collapsed"](self, with_identity)


def folded_identity_forward(self: reparam.ReparamConv, x: torch.Tensor) -> torch.Tensor:
    """bf16 recipe 1: one conv of the collapsed kernel, identity included, under autocast as in fp32."""
    weight, bias = self.collapsed()
    return F.conv2d(x, weight, bias, self.stride, self.padding)


PATCHES = {"fp32-collapse": ("collapsed", fp32_collapse, "an fp32 collapse"),
           "folded-identity": ("forward", folded_identity_forward, "the identity folded")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("patch", choices=sorted(PATCHES))
    ap.add_argument("net", help="a reference net of sr2x (e.g. ecbsr_m4c8)")
    ap.add_argument("seeds", help="training seeds, comma-separated")
    args = ap.parse_args()
    attribute, patched_method, label = PATCHES[args.patch]
    space = get_space("sr2x")
    spec = (space.references() | space.modern_references())[args.net]
    config = TrainConfig()
    data = load_data("sr", 2, config.patch_size)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = replace(config, seed=seed)
        fp32 = short_train(spec, data, cfg).psnr_gain_db
        bf16 = short_train(spec, data, replace(cfg, train_dtype="bf16")).psnr_gain_db
        setattr(reparam.ReparamConv, attribute, patched_method)
        try:
            patched = short_train(spec, data, replace(cfg, train_dtype="bf16")).psnr_gain_db
        finally:
            setattr(reparam.ReparamConv, attribute, ORIGINAL[attribute])
        rows.append((fp32, bf16, patched))
        print(f"{args.net} seed {seed}: fp32 {fp32:+.4f} bf16 {bf16:+.4f} ({bf16 - fp32:+.4f}) "
              f"bf16 with {label} {patched:+.4f} ({patched - fp32:+.4f})", flush=True)
    print(f"{args.net} means: bf16 - fp32 {statistics.mean(b - a for a, b, _ in rows):+.4f}, "
          f"bf16 with {label} - fp32 {statistics.mean(c - a for a, _, c in rows):+.4f}")


if __name__ == "__main__":
    main()
