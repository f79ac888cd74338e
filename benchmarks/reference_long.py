"""The long-training gain of named reference nets at several seeds, through a bench's own training cache (issue #25).

Usage: python benchmarks/reference_long.py --latency-db BENCH/lat.db --seeds 7,8 --steps 1000 [--input-size 136x240]
           fsrcnn_small ecbsr_m4c16 sesr_m5 quicksrnet_s

``nas bench`` trains the references longer at one seed only; the issue's proof compares each seed's winner after its
long training with the references that fit and those just over the budget at the same seed. Each training is the
search's own (``Target.resolve`` with the bench's defaults and ``--train-dtype auto``), cached under the usual key, so
a training the bench already did is read, not repeated. Prints one markdown row per net and seed.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from nas.target import Budget, Target, parse_input_size
from nas.training.train_cache import TrainCache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nets", nargs="+")
    ap.add_argument("--latency-db", required=True, help="the bench's database (its training cache too)")
    ap.add_argument("--seeds", default="7,8")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--input-size", default="136x240")
    ap.add_argument("--task", default="sr2x")
    args = ap.parse_args()
    print("| net | seed | steps | gain dB | cached | train s |")
    print("|---|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        target = Target.resolve(budget=Budget(1.0), task=args.task, backend="onnxruntime", seed=seed,
                                input_size=parse_input_size(args.input_size), latency_db=args.latency_db)
        refs = target.space.references() | target.space.modern_references()
        data, config = target.load_data(), replace(target.train_config, steps=args.steps)
        cache = TrainCache(target.open_store().shared_engine)
        for name in args.nets:
            result, cached, _ = cache.train(refs[name], data, config, target.backend, target.device)
            print(f"| {name} | {seed} | {args.steps} | {result.psnr_gain_db:+.3f} | {cached} | "
                  f"{0.0 if cached else result.train_s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
