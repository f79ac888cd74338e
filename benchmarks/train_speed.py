"""Training steps per second of the bench's reference nets under the ways a step could be made faster (issue #25).

Usage: python benchmarks/train_speed.py [--steps 30] [--rounds 3] [--variants fp32,channels_last,compile] [NET ...]
       python benchmarks/train_speed.py --quality [--quality-vs bf16] [--train-steps N] [--seeds 0,1] [NET ...]

Each variant runs the search's training step exactly (``build`` + ``--reparam ecb``, ``PatchSampler`` at
TrainConfig's batch and patch, Adam over ``param_groups``, L1): ``fp32`` is today's (NCHW), ``channels_last`` puts the
net and its inputs in channels-last memory, ``bf16`` adds CPU autocast to bfloat16 (refused unless the CPU computes
bf16 natively: avx512_bf16 or AMX), ``compile`` wraps the net in ``torch.compile`` (its compile time is printed apart).
The variants run interleaved in ``--rounds`` rounds of ``--steps`` steps per net, each on its own copy of the net, so
that a noisy CPU shifts them alike; the step time is the median over the rounds' steps. Prints one markdown row per
net and variant: ms per step, steps/s, the ratio to fp32, and the load average. ``--quality`` instead trains each
net in full (``short_train`` at TrainConfig's defaults) as today and as ``--quality-vs`` (channels-last memory, or
``train_dtype`` bf16) and prints both gains.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from nas.training.data import PatchSampler, load_data
from nas.training.dtype import native_bf16
from nas.training.metrics import parse_loss
from nas.training.reparam import reparameterize
from nas.training.train import TrainConfig, optimizer_for, short_train, train_step
from search_spaces import build, get_space

NETS = ("tiny", "fsrcnn_small", "ecbsr_m4c8", "ecbsr_m4c16", "quicksrnet_s", "sesr_m5")
VARIANTS = ("fp32", "channels_last", "bf16", "compile")


def stepper(name: str, variant: str, data: object, config: TrainConfig) -> tuple[Callable[[], None], float]:
    """One training step of ``name`` under ``variant`` as a callable, and the seconds its first step took."""
    space = get_space("sr2x")
    spec = (space.references() | space.modern_references())[name]
    torch.manual_seed(config.seed)
    net = reparameterize(build(spec), config.reparam, keep=False).train()
    sampler = PatchSampler(data, config.patch_size, seed=config.seed, rotate=config.rotate,
                           noise_sigma=config.noise_sigma)
    opt, sched = optimizer_for(net, config)
    loss_fn = parse_loss(config.loss)
    layout = torch.channels_last if variant in ("channels_last", "bf16") else torch.contiguous_format
    net = net.to(memory_format=layout)
    model = torch.compile(net) if variant == "compile" else net

    def step() -> None:  # the search's own step (nas.training.train.train_step)
        inp, tgt = sampler.batch(config.batch_size)
        train_step(model, inp.contiguous(memory_format=layout), tgt, loss_fn, opt, sched,
                   "bf16" if variant == "bf16" else "fp32")

    t0 = time.perf_counter()
    step()
    return step, time.perf_counter() - t0


def quality(nets: list[str], config: TrainConfig, data: object, other: str, seeds: list[int]) -> None:
    """Full short trainings of each net as today (fp32, NCHW) and as ``other`` (channels_last: fp32 in channels-last
    memory; bf16: ``train_dtype`` bf16, the search's own path), per seed: the gain of each and the difference. With
    several seeds a last row per net gives the means: a different rounding carries 500 Adam steps apart, so one
    seed's difference mixes the dtype's effect with that chaos, whose size the seeds' spread shows."""
    space = get_space("sr2x")
    specs = space.references() | space.modern_references()
    print(f"| net | seed | gain dB fp32 NCHW | gain dB {other} | difference dB | train s fp32 NCHW | train s {other} |")
    print("|---|---|---|---|---|---|---|")
    for name in nets:
        pairs = []
        for seed in seeds:
            cfg = replace(config, seed=seed)
            a = short_train(specs[name], data, cfg)
            b = (short_train(specs[name], data, replace(cfg, train_dtype="bf16")) if other == "bf16"
                 else short_train(specs[name], data, cfg, layout=torch.channels_last))
            pairs.append((a.psnr_gain_db, b.psnr_gain_db))
            print(f"| {name} | {seed} | {a.psnr_gain_db:+.4f} | {b.psnr_gain_db:+.4f} | "
                  f"{b.psnr_gain_db - a.psnr_gain_db:+.4f} | {a.train_s:.1f} | {b.train_s:.1f} |", flush=True)
        if len(seeds) > 1:
            ma, mb = statistics.mean(x for x, _ in pairs), statistics.mean(y for _, y in pairs)
            print(f"| {name} | mean | {ma:+.4f} | {mb:+.4f} | {mb - ma:+.4f} | | |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nets", nargs="*", default=list(NETS))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="fp32,channels_last,compile")
    ap.add_argument("--quality", action="store_true", help="train each net in full as today and as --quality-vs")
    ap.add_argument("--quality-vs", choices=("channels_last", "bf16"), default="channels_last")
    ap.add_argument("--train-steps", type=int, default=TrainConfig.steps, help="--quality: steps per training")
    ap.add_argument("--seeds", default="0", help="--quality: training seeds, comma-separated (default 0)")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if ("bf16" in variants or args.quality_vs == "bf16") and not native_bf16():
        raise SystemExit("bf16: this CPU has no native bf16 (no avx512_bf16 or AMX): autocast would emulate it")
    config = TrainConfig(steps=args.train_steps)
    data = load_data("sr", 2, config.patch_size)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"native bf16: {native_bf16()}")
    if args.quality:
        quality(args.nets, config, data, args.quality_vs, [int(x) for x in args.seeds.split(",")])
        return
    print("| net | variant | ms/step (median) | steps/s | vs fp32 | first step s | load 1m before/after |")
    print("|---|---|---|---|---|---|---|")
    for name in args.nets:
        before = os.getloadavg()[0]
        steps, first = {}, {}
        for v in variants:
            steps[v], first[v] = stepper(name, v, data, config)
            for _ in range(3):  # warm-up
                steps[v]()
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    steps[v]()
                    times[v].append(time.perf_counter() - t0)
        base = statistics.median(times[variants[0]])
        for v in variants:
            med = statistics.median(times[v])
            print(f"| {name} | {v} | {med * 1000:.1f} | {1 / med:.1f} | {base / med:.2f}x | {first[v]:.1f} | "
                  f"{before:.2f}/{os.getloadavg()[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
