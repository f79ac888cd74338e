"""``nas bench``: the search against hand-designed networks and against random search, at equal latency."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TypeVar

from nas.commands import COMMANDS, flags

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
T = TypeVar("T")


def _list_of(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError with a user-facing message."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


@COMMANDS.register("bench")
def register(sub: argparse._SubParsersAction) -> None:
    from nas.bench.config import (
        DEFAULT_BUDGETS,
        DEFAULT_SAMPLERS,
        DEFAULT_SEEDS,
        LONG_FACTOR,
        SR_TASKS,
        parse_budgets,
        parse_samplers,
        parse_seeds,
    )
    from nas.search.config import DEFAULT_TRIALS

    p = sub.add_parser(
        "bench", help="does the search beat the reference nets and random search at equal latency?",
        description="For each budget and seed run the search (its default sampler) and a RandomSampler search "
        "with the same trials and training steps (all start from the reference nets), all sharing one latency "
        "database and training cache; time plain bicubic and bilinear; train each budget's winner and the references "
        "longer and report the Spearman rank correlation of short against long gain. Writes bench.json "
        "and bench.md into --out, and each search's run dir under --out/<budget>ms/<sampler>-seed<k>/. "
        "Exit codes: 0 success, 1 runtime error, 2 usage or input error, 130 interrupted (rerun to resume).",
    )
    budgets = ",".join(f"{b:g}" for b in DEFAULT_BUDGETS)
    seeds = ",".join(map(str, DEFAULT_SEEDS))
    p.add_argument("--budgets", type=_list_of(parse_budgets), default=DEFAULT_BUDGETS, metavar="MS,MS,...",
                   help=f"latency budgets in ms (default {budgets})")
    p.add_argument("--seeds", type=_list_of(parse_seeds), default=DEFAULT_SEEDS, metavar="S,S,...",
                   help=f"seeds; each seeds every sampler and the training (default {seeds})")
    p.add_argument("--samplers", type=_list_of(parse_samplers), default=DEFAULT_SAMPLERS, metavar="NAME,...",
                   help=f"samplers to run, the search first and random among the others as the control "
                   f"(default {','.join(DEFAULT_SAMPLERS)}; e.g. evolution,tpe,random)")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"trials per search, the reference nets included (default {DEFAULT_TRIALS})")
    flags.add_training(p, steps_default="the search's")
    p.add_argument("--long-steps", type=int,
                   help=f"steps of the long training of winners and references (default {LONG_FACTOR}x the short)")
    flags.add_finalists(p)
    flags.add_task(p, choices=SR_TASKS, what="super-resolution task")
    flags.add_backend(p)
    flags.add_precision(p)
    flags.add_input_size(p)
    p.add_argument("--out", default="bench", metavar="DIR", help="output folder (default bench)")
    flags.add_latency_db(p, note="; shared by every search")
    flags.add_baseline(p)
    flags.add_json(p, "bench.json's object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nas.bench import Bench, BenchConfig, finite
    from nas.bench.render import db_text
    from nas.target import parse_input_size

    config = BenchConfig(
        budgets=args.budgets, seeds=args.seeds, samplers=args.samplers, trials=args.trials,
        train_steps=args.train_steps, reparam=args.reparam, train_dtype=args.train_dtype, long_steps=args.long_steps,
        task=args.task,
        finalists=args.finalists, final_steps=args.final_steps,
        backend=args.backend, precision=args.precision,
        input_size=parse_input_size(args.input_size) if args.input_size else None, out=args.out,
        latency_db=args.latency_db, baselines=tuple(args.baseline),
    )
    bench = Bench(config, quiet=args.json)
    result = bench.run()
    if bench.interrupted:
        print(f"nas bench: interrupted; every finished trial is kept under {config.out}: rerun the same command "
              "to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(finite(result), allow_nan=False))
    else:
        for t in result["targets"]:
            print(f"{t['budget_ms']:g} ms: winner {db_text(t['winner_gain_db'])} dB, best reference "
                  f"{t['reference'] or '-'} {db_text(t['reference_gain_db'])} dB, "
                  f"random {db_text(t['random_gain_db'])} "
                  f"dB; {t['over_budget_trials']} over budget, {t['over_budget_train_s']:g} s of their training; "
                  f"after the long training the winner beats it on {t['seeds_beating_reference_long']}/{t['seeds']} "
                  "seeds")
        rho = result["long"]["spearman"]
        print(f"Spearman short vs long gain over {result['long']['n_pairs']} nets: "
              f"{'-' if rho is None else f'{rho:+.3f}'}")
        print(f"written: {config.out}/bench.json, {config.out}/bench.md")
    return 0
