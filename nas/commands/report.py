"""``nas report RUN_DIR``: write the run's self-contained HTML Pareto report (and optionally a PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.commands import COMMANDS, flags


@COMMANDS.register("report")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the interactive Pareto report of a search run",
                       description="Write RUN_DIR/report.html: one self-contained HTML file (plotly.js "
                       "inline, opens offline) with the Pareto chart, search progress, latency against "
                       "MACs, the top candidates and validation crops of the winner.")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, nargs="?",
                   help="the --run-dir of a nas search (with --storage: where the study's run dir is rebuilt, "
                   "default runs/<study>)")
    add_shared_study_args(p)
    p.add_argument("--png", action="store_true",
                   help="also write RUN_DIR/pareto.png (needs kaleido and Chrome/Chromium; "
                   "without them a warning is printed and only the HTML is written)")
    flags.add_baseline(p)
    p.set_defaults(handler=run)


def add_shared_study_args(p: argparse.ArgumentParser) -> None:
    """--storage / --study / --latency-db: read a shared study instead of a worker's run dir."""
    flags.add_shared_study(p, storage_help="a shared study's Optuna storage (postgresql://... or journal:PATH): "
                           "rebuild its run dir from the storage and the training cache, no worker's disk",
                           study_help="the study name, with --storage")
    flags.add_latency_db(p, note="; with --storage: the one the workers shared (its training cache holds the weights)")


def resolve_run_dir(args: argparse.Namespace, default: Path | None) -> Path:
    """RUN_DIR as given, or the shared study rebuilt into RUN_DIR (or ``default``) when --storage is given."""
    from nas.errors import UsageError

    if args.storage is None:
        if args.study is not None:
            raise UsageError("--study needs --storage (the study's Optuna storage URL)")
        if args.run_dir is None:
            raise UsageError("give a RUN_DIR, or --storage URL --study NAME for a shared study")
        return args.run_dir
    if args.study is None:
        raise UsageError("--storage needs --study NAME (the shared study to read)")
    from nas.search.shared_study import rebuild_run_dir

    target = args.run_dir or default or Path("runs") / args.study
    return rebuild_run_dir(args.storage, args.study, target, args.latency_db)


def run(args: argparse.Namespace) -> int:
    from nas.report import write_report

    run_dir = resolve_run_dir(args, None)
    if args.baseline:
        add_run_baselines(run_dir, args.baseline, args.latency_db)
    print(write_report(run_dir, png=args.png))
    return 0


def add_run_baselines(run_dir: Path, items: list[tuple[str, str]], latency_db: str | None) -> None:
    """Time and judge ``--baseline`` graphs as the run's search would have, into its run.json."""
    import sys

    from nas.baseline.load import load_baselines
    from nas.baseline.run import evaluate, run_target
    from nas.rundir import RunDir, add_baselines, as_dict, integer
    from nas.training.train_cache import TrainCache

    target = run_target(run_dir, latency_db)
    baselines = load_baselines(items, target)  # checked before anything is written
    store = target.open_store()
    finals = as_dict(as_dict(RunDir.load(run_dir).meta.get("summary")).get("finalists"))

    def say(message: str) -> None:
        print(f"nas report: {message}", file=sys.stderr, flush=True)

    add_baselines(run_dir, evaluate(baselines, target, target.load_data(), store, say,
                                    cache=TrainCache(store.shared_engine), final_steps=integer(finals.get("steps"))))
