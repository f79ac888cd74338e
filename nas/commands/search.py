"""``nas search --budget-ms MS``: the main job."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from nas.commands import COMMANDS, flags
from nas.errors import NoFeasibleError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of milliseconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of milliseconds, got {text!r}")
    return value


def _target(text: str) -> tuple[str, float | None]:
    """argparse type: NAME or NAME=MS."""
    name, sep, ms = text.partition("=")
    try:
        flags.agent_name(name)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return name, (_budget(ms) if sep else None)


@COMMANDS.register("search")
def register(sub: argparse._SubParsersAction) -> None:
    from nas.search.config import DEFAULT_PRUNER, DEFAULT_SAMPLER, DEFAULT_TRIALS, PRUNERS, SAMPLERS
    from nas.search.latency_guard import PREDICTOR_MODES
    from nas.target import BUDGET_STATS

    p = sub.add_parser(
        "search", help="search for the best network under a latency budget",
        description="Sample architectures with Optuna, measure each untrained candidate's latency on the "
        "target device (cached in the latency database), short-train only those under the budget, and "
        "write a run dir with run.json, trials.csv, report.html and best/ (the winner as plain PyTorch code). "
        "Exit codes: 0 success, 1 runtime error, 2 usage or input error, 3 no architecture meets the budget.",
    )
    p.add_argument("--budget-ms", type=_budget, metavar="MS",
                   help="per-frame latency budget (required unless every --target gives its own)")
    p.add_argument("--target", type=_target, action="append", default=[], metavar="NAME[=MS]",
                   help="measure on the latency agents named NAME (`nas agent --name NAME` on that device), or on "
                   "this machine with NAME local; repeat it for several devices: a candidate must fit every "
                   "target's budget (=MS, else --budget-ms). Default: this machine only (docs/agents.md)")
    p.add_argument("--target-timeout", type=_budget, default=600.0, metavar="SECONDS",
                   help="how long a search waits for a target's agents to finish one job before it stops "
                   "(default 600)")
    flags.add_task(p)
    flags.add_backend(p)
    flags.add_precision(p)
    flags.add_input_size(p)
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"trials this run dir contributes to the study (default {DEFAULT_TRIALS}); "
                   "rerunning the same command resumes up to this number")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="stop asking for new trials after this many seconds of searching (the trial in progress "
                   "finishes; report and export follow as usual; rerunning the same command goes on)")
    flags.add_training(p, steps_default="the training config's")
    flags.add_finalists(p)
    p.add_argument("--seed", type=int, default=0, help="seed for the sampler and training (default 0)")
    p.add_argument("--sampler", choices=SAMPLERS.names(), default=DEFAULT_SAMPLER,
                   help="Optuna sampler, seeded by --seed: evolution (default: edits the best trials, growing "
                   "them while latency is left and shrinking them when over), tpe, or random (a blind-search control)")
    p.add_argument("--pruner", choices=PRUNERS.names(), default=DEFAULT_PRUNER,
                   help=f"stop trainings that are behind at a rung (default {DEFAULT_PRUNER}): none, sha (Optuna's "
                   "successive halving at 1/5 and 2/5 of --train-steps), hyperband (at 1/5 and 3/5); a stopped "
                   "trial is PRUNED with its gain at the rung and never wins (reports/pruning.md)")
    p.add_argument("--run-dir", help="output folder (default runs/<study>)")
    flags.add_shared_study(p, storage_help="Optuna storage: postgresql://... to share a study across machines, "
                           "or journal:PATH (default: a journal file in the run dir)",
                           study_help="study name (default derived from task, backend, size, budget)")
    flags.add_latency_db(p)
    p.add_argument("--data", metavar="DIR",
                   help="folder of PNG/JPEG frames, or a video file (.mp4, .mov, .mkv, ...: its frames in order) "
                   "(default: photos bundled with scikit-image)")
    p.add_argument("--val-data", metavar="DIR",
                   help="validation frames, a folder or a video file (default: a fixed split of --data)")
    p.add_argument("--loss", default="l1", help="l1 (default), charbonnier, or sums like l1+hfen:0.1")
    p.add_argument("--noise-sigma", type=float, default=25.0, help="denoise: Gaussian noise sigma on 0-255")
    p.add_argument("--degradation", default="bicubic", metavar="KIND",
                   help="how unpaired frames (and the bundled photos) become inputs: bicubic (default, antialiased), "
                   "render (point sampling, aliased, as a game renders at low resolution), render-jitter (the same "
                   "with a sub-pixel offset per frame), video (bicubic then JPEG at --jpeg-quality); "
                   "--task enhance with video: JPEG alone. Folders with input/ and target/ pairs use their own inputs")
    p.add_argument("--jpeg-quality", type=int, default=90, metavar="Q",
                   help="JPEG quality of --degradation video, 1-95 (default 90, as NTIRE 2023 real-time SR)")
    p.add_argument("--val-sequence", action="store_true",
                   help="the validation frames, sorted by name, are an ordered clip: also measure flicker")
    p.add_argument("--min-shift-consistency", type=float, metavar="DB",
                   help="a trained candidate whose shift consistency (dB) is below this is not eligible to win")
    p.add_argument("--budget-stat", choices=BUDGET_STATS, default="median",
                   help="latency statistic the budget applies to (default median)")
    p.add_argument("--no-warm-start", action="store_true",
                   help="do not enqueue the reference networks as the first trials")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--no-export", action="store_true", help="skip best/ (the exported winner)")
    p.add_argument("--predictor", choices=PREDICTOR_MODES, default=None,
                   help="learned latency predictor: screen (default, once a fitted predictor is trusted: skip "
                   "candidates predicted over the budget by more than its p99 error), guide (also steer the "
                   "evolution sampler to children predicted just under the budget), off")
    flags.add_baseline(p)
    flags.add_json(p, "one JSON summary object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Search, then the report and the export of the winner, each a step over the run dir."""
    from nas.errors import UsageError
    from nas.search.config import SearchConfig
    from nas.search.driver import Search
    from nas.target import Target, parse_input_size, target_budgets

    budget, targets = target_budgets(args.target, args.budget_ms, args.budget_stat)
    if targets and args.precision is not None:
        raise UsageError("--precision with --target is not supported yet: agents time their backend's own precision")
    if targets and args.predictor in ("screen", "guide"):
        raise UsageError(f"--predictor {args.predictor} predicts one device: with --target it is off")
    config = SearchConfig(trials=args.trials, seed=args.seed, sampler=args.sampler, run_dir=args.run_dir,
                          storage=args.storage, study=args.study, warm_start=not args.no_warm_start,
                          predictor="off" if targets else args.predictor, pruner=args.pruner,
                          timeout_s=args.timeout, target_timeout_s=args.target_timeout,
                          finalists=args.finalists, final_steps=args.final_steps)
    target = Target.resolve(
        budget=budget, targets=targets, task=args.task, backend=args.backend,
        input_size=parse_input_size(args.input_size) if args.input_size else None, loss=args.loss,
        seed=args.seed, train_steps=args.train_steps, reparam=args.reparam, train_dtype=args.train_dtype,
        noise_sigma=args.noise_sigma,
        latency_db=args.latency_db,
        data=args.data, val_data=args.val_data, degradation=args.degradation, jpeg_quality=args.jpeg_quality,
        val_sequence=args.val_sequence, min_shift_consistency=args.min_shift_consistency, precision=args.precision,
    )
    from nas.baseline.load import load_baselines

    baselines = load_baselines(args.baseline, target)  # checked before anything is written
    search = Search(target, config, quiet=args.json)
    summary = search.run()
    records = []
    if baselines and not search.interrupted:
        from nas.baseline.run import evaluate
        from nas.rundir import add_baselines

        final_steps = config.final_steps_for(target.train_config.steps) if search.finals else None
        records = evaluate(baselines, target, search.data, search.store, search.say, search.targets,
                           search.train_cache, final_steps)
        add_baselines(search.run_dir, records)
    if summary["best"] is not None and not search.interrupted:
        write_outputs(search.run_dir, report=not args.no_report, export=not args.no_export, say=search.say)
    out = {
        **summary,
        "backend": target.backend.name,
        "device": target.device_name,
        "input_size": list(target.input_size),
        "budget_ms": target.budget.limit_ms,
        **({"targets": search.meta.get("targets")} if target.targets else {}),
        "study": search.study_name,
        "run_dir": str(search.run_dir),
        **({"baselines": records} if records else {}),
    }
    if args.json:
        print(json.dumps(out))
    if search.interrupted:
        print(f"nas search: interrupted after {summary['this_run']['trials']} trials; everything is kept in "
              f"{search.run_dir}: rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary["best"] is None:
        raise NoFeasibleError(search.no_feasible_message())
    if not args.json:
        best = summary["best"]
        print(f"best: trial {best['trial']} {best['summary']}")
        print(f"      {best['latency_ms']:.3f} ms ({target.budget.stat} budget {target.budget.limit_ms:g} ms), "
              f"{best['psnr_gain_db']:+.2f} dB over bicubic after {target.train_config.steps} steps"
              + (f", {best['final_psnr_gain_db']:+.2f} dB after {best['final_steps']} (the best of "
                 f"{summary['finalists']['n']} finalists)" if best["final_psnr_gain_db"] is not None else "")
              + f"; {summary['n_trials']} trials, {summary['n_trained']} trained, {summary['n_over_budget']} over "
              "budget (never trained)")
        if best["shift_consistency_db"] is not None:
            print(f"      shift consistency {best['shift_consistency_db']:.1f} dB"
                  + (f", temporal PSNR {best['temporal_psnr_db']:.1f} dB" if best["temporal_psnr_db"] is not None
                     else ""))
        print(f"run dir: {search.run_dir}")
    return 0


def write_outputs(run_dir: Path, *, report: bool, export: bool, say: Callable[[str], None]) -> None:
    """The report and the export of the winner, each from the run dir alone."""
    if report:
        from nas.report import write_report

        say(f"report: {write_report(run_dir)}")
    if export:
        from nas.export import export_run

        best = run_dir / "best"
        if best.exists():
            shutil.rmtree(best)  # the run's own previous export: always regenerated from the run dir
        export_run(run_dir, best)
        say(f"winner exported to {best}")
