"""Optuna study driver: sample -> latency gate -> short train -> record.

One objective (maximize validation PSNR gain over bicubic, dB) under one constraint (latency minus
budget <= 0, reported with ``trial.set_constraint``). A candidate over the budget is told PRUNED
right after its measurement: it is never trained; TPE ranks it as infeasible by how far it missed
(tests/test_search_gate.py), and the default evolution sampler shrinks the nets it derives from it
(nas/samplers.py). With ``--pruner`` a candidate in the budget reports its validation gain at a few
rungs and is stopped (PRUNED with ``pruned_at_step``) when it is behind. Latency comes from the latency database first; training
results come from a training cache keyed by arch_id + training-config hash + data fingerprint.
"""

from __future__ import annotations

import math
import platform
import signal
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nas import __version__
from nas.errors import NasError, UsageError
from nas.latency_guard import PREDICTOR_MODES, LatencyGuard
from nas.rundir import RunDirWriter, TrialRow, summarize, trial_row
from nas.shared_study import WorkerBeacon, materialize, publish_run_meta, wait_for_workers
from nas.storage import (
    ask,
    create_or_load_study,
    heartbeat,
    heartbeat_settings,
    mask_url,
    open_optuna_storage,
    retried_trial_numbers,
    waiting_retries,
)
from nas.target import Budget, Target
from search_spaces.registry import Registry

DEFAULT_SAMPLER = "evolution"   # budget-aware regularized evolution (nas/samplers.py; reports/bench.md)
DEFAULT_TRIALS = 50  # at 4 ms on 2 CPU cores: 2-3 minutes (reports/search_default.md)
IDENTITY_WAIT_S = 30  # how long a worker waits for the study's creator to seed it
DEFAULT_PRUNER = "none"  # chosen by the equal-wall-time benchmark: pruning won nothing beyond noise (reports/pruning.md)


@dataclass(frozen=True)
class SearchConfig:
    """How the search loop runs (what it searches for is the Target): trials, sampler, where it keeps state."""

    trials: int = DEFAULT_TRIALS
    seed: int = 0
    sampler: str = DEFAULT_SAMPLER              # one of SAMPLERS
    run_dir: str | None = None                  # None: runs/<study>
    storage: str | None = None                  # None: a journal file in the run dir
    study: str | None = None                    # None: derived from the target, seed and sampler
    warm_start: bool = True
    predictor: str | None = None                # off | screen | guide; None: screen when trusted (nas/latency_guard.py)
    pruner: str = DEFAULT_PRUNER                # one of PRUNERS: stops trainings that are behind at a rung
    timeout_s: float | None = None              # stop asking for trials after this long (the current one finishes)

    def __post_init__(self) -> None:
        """Reject bad values with one line naming the flag (raised before anything is written)."""
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise UsageError(f"--timeout must be a positive number of seconds, got {self.timeout_s!r}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS.names())}, got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise UsageError(f"--pruner must be one of {', '.join(PRUNERS.names())}, got {self.pruner!r}")
        if self.predictor is not None and self.predictor not in PREDICTOR_MODES:
            raise UsageError(f"--predictor must be one of {', '.join(PREDICTOR_MODES)}, got {self.predictor!r}")
        if self.predictor == "guide" and self.sampler != "evolution":
            raise UsageError(f"--predictor guide steers the evolution sampler; --sampler is {self.sampler!r}")


@dataclass
class Tally:
    """Counters for the progress line and the summary."""

    n_done: int = 0
    latency_hits: int = 0
    train_hits: int = 0
    measure_s: float = 0.0
    train_s: float = 0.0
    lock_wait_s: float = 0.0
    contended: int = 0          # CPU measurements timed while other processes were busy
    stopped: int = 0            # trainings the pruner stopped at a rung
    resumed: int = 0            # trainings that went on from a checkpoint stopped at a rung
    timed_out: bool = False     # --timeout ended the loop before the run dir had its trials
    best_gain: float | None = None
    best_latency: float | None = None
    started: float = field(default_factory=time.perf_counter)


class Progress:
    """Trial n/N, best so far, cache hits and time split, on stderr; silent when asked or not a TTY."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar = None
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=sys.stderr, unit="trial", dynamic_ncols=True)

    def update(self, tally: Tally, initial: int = 0) -> None:
        if self.bar is None:
            return
        best = "-" if tally.best_gain is None else f"{tally.best_gain:+.2f} dB @ {tally.best_latency:.2f} ms"
        self.bar.set_postfix_str(
            f"best {best} | pruned {tally.stopped} | hits lat {tally.latency_hits} train {tally.train_hits} | "
            f"measure {tally.measure_s:.0f}s train {tally.train_s:.0f}s wait {tally.lock_wait_s:.0f}s",
            refresh=False,
        )
        self.bar.n = initial
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class StopFlag:
    """First Ctrl-C: finish the current trial, then stop cleanly. Second: abort now."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self, say: Any) -> Iterator[StopFlag]:
        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            say("interrupt: finishing the current trial, then stopping (Ctrl-C again to abort)")

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def versions() -> dict[str, str | None]:
    """Exact versions of what shapes the numbers (stored in run.json)."""
    from importlib import metadata

    out: dict[str, str | None] = {"nas": __version__, "python": platform.python_version()}
    for dist in ("torch", "optuna", "onnx", "onnxruntime", "tensorrt", "numpy", "scikit-image"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def latency_gate(study: Any, trial: Any, latency_ms: float, budget: Budget) -> bool:
    """Report the constraint; over budget, tell the trial PRUNED at once and return False.

    A PRUNED trial with a positive constraint is infeasible for TPE, which ranks it after every
    feasible trial by how far it missed (tests/test_search_gate.py checks that it learns from it).
    """
    from optuna.trial import TrialState

    trial.set_constraint("latency_ms", latency_ms - budget.limit_ms)
    if not budget.admits_ms(latency_ms):
        study.tell(trial, state=TrialState.PRUNED)
        return False
    return True


def default_study_name(target: Target, config: SearchConfig) -> str:
    from nas.data import DEFAULT_DEGRADATION, degradation_tag

    budget = f"{target.budget.limit_ms:g}".replace(".", "p")
    # another sampler (the random control) or degradation gets a study and run dir of its own
    sampler = "" if config.sampler == DEFAULT_SAMPLER else f"-{config.sampler}"
    tag = degradation_tag(target.degradation, target.jpeg_quality)
    degradation = "" if tag == DEFAULT_DEGRADATION else f"-{tag}"
    h, w = target.input_size
    return (f"{target.space.name}{degradation}-{target.backend.name}-{h}x{w}-{target.budget.stat}{budget}ms-"
            f"seed{config.seed}{sampler}")


# Optuna samplers by ``--sampler`` name: (budget, seed, predictor guide or None) -> sampler. Optuna loads
# only when one is made.
SAMPLERS: Registry[Callable[[Budget, int, Any], Any]] = Registry("sampler")


@SAMPLERS.register("evolution")
def _evolution(budget: Budget, seed: int, guide: Any = None) -> Any:
    """Budget-aware regularized evolution (nas/samplers.py), the default; ``guide`` picks among children."""
    from nas.samplers import EvolutionSampler

    return EvolutionSampler(budget=budget.limit_ms, seed=seed, guide=guide)


@SAMPLERS.register("tpe")
def _tpe(budget: Budget, seed: int, guide: Any = None) -> Any:
    """Optuna's TPE, with the budget as a constraint (told through ``latency_gate``)."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


@SAMPLERS.register("random")
def _random(budget: Budget, seed: int, guide: Any = None) -> Any:
    """Random search: the blind-search control of ``nas bench``."""
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


@dataclass(frozen=True)
class Pruning:
    """An Optuna pruner and the training steps (rungs) at which a candidate reports its validation gain to it."""

    pruner: Any
    rungs: tuple[int, ...]


# Pruners by ``--pruner`` name: (full training steps) -> Pruning. The first rung is a fifth of the
# training (100 of 500 steps), where the gain already ranks candidates (reports/pruning.md).
PRUNERS: Registry[Callable[[int], Pruning]] = Registry("pruner")


def first_rung(steps: int) -> int:
    """The first rung: a fifth of the training, at least one step."""
    return max(1, steps // 5)


@PRUNERS.register("none")
def _no_pruner(steps: int) -> Pruning:
    """Every candidate under the budget is trained in full (no rungs: no extra validations)."""
    import optuna

    return Pruning(optuna.pruners.NopPruner(), ())


@PRUNERS.register("sha")
def _sha(steps: int) -> Pruning:
    """Successive halving: at each rung (a fifth, then two fifths of the training) a candidate goes on
    only when its gain is in the top half of those that reached that rung."""
    import optuna

    r0 = first_rung(steps)
    rungs = tuple(r for r in (r0, 2 * r0) if r < steps)
    return Pruning(optuna.pruners.SuccessiveHalvingPruner(min_resource=r0, reduction_factor=2), rungs)


@PRUNERS.register("hyperband")
def _hyperband(steps: int) -> Pruning:
    """Hyperband over successive-halving brackets with a reduction factor of 3 from a fifth of the training."""
    import optuna

    r0 = first_rung(steps)
    rungs = tuple(r for r in (r0, 3 * r0) if r < steps)
    return Pruning(optuna.pruners.HyperbandPruner(min_resource=r0, max_resource=steps, reduction_factor=3), rungs)


class Search:
    """One search run against one Target in one run dir; ``run()`` returns the summary.

    It writes the run dir's trials (docs/run_dir.md) and nothing else: the report and the export
    are separate steps over the run dir (``nas search`` composes them).
    """

    def __init__(self, target: Target, config: SearchConfig, quiet: bool = False) -> None:
        self.target = target
        self.config = config
        self.quiet = quiet
        self.study_name = config.study or default_study_name(target, config)
        self.run_dir = Path(config.run_dir or Path("runs") / self.study_name)
        self.writer = RunDirWriter(self.run_dir)
        self.interrupted = False
        self.summary: dict[str, Any] | None = None

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"nas search: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        import optuna

        from nas.train_cache import TrainCache

        cfg, target = self.config, self.target
        self.writer.check(self.study_name)
        self.data = target.load_data()
        remote = cfg.storage is not None and "://" in cfg.storage  # before the latency DB: a bad URL writes nothing
        storage = open_optuna_storage(cfg.storage, self.run_dir / "study.journal") if remote else None
        self.store = target.open_store()
        self.train_cache = TrainCache(self.store.url)
        held: list[str] = []  # the guard's notes wait until every check has passed (a refused run says one line)
        self.guard = LatencyGuard(cfg.predictor, target.backend, self.store, target.workload, target.space,
                                  target.input_size, target.budget.limit_ms, held.append)
        self.writer.create()  # only now: every check above writes nothing
        # said after the checks, so that a refused run prints its error line alone
        self.say(target.describe())
        for note in held:
            self.say(note)
        self.guard.say = self.say
        if storage is None:
            storage = open_optuna_storage(cfg.storage, self.run_dir / "study.journal")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.pruning = PRUNERS.get(cfg.pruner)(target.train_config.steps)
        self.study, created = create_or_load_study(
            self.study_name, storage, SAMPLERS.get(cfg.sampler)(target.budget, self._sampler_seed(), self.guard.guide()),
            self.pruning.pruner)
        self._check_study_settings(created)
        publish_run_meta(self.study, self._run_meta())
        self._write_run_json(None)

    def _sampler_seed(self) -> int:
        """--seed alone for a study of its own; mixed with the run dir when --storage shares the study, so
        that workers started with the same command do not all sample the same candidates."""
        if self.config.storage is None:
            return self.config.seed
        return (self.config.seed + zlib.crc32(str(self.run_dir.resolve()).encode())) % 2**32

    def _identity(self) -> dict[str, Any]:
        """What a study's trials depend on: mixing runs that differ here would mix incomparable numbers.
        The degradation and the stability floor appear only when set, so that earlier studies resume."""
        t = self.target
        identity = {"task": t.space.name, "space_version": t.space.version, "backend": t.backend.name,
                    "input_size": list(t.input_size), "budget_ms": t.budget.limit_ms,
                    "budget_stat": t.budget.stat, "train_config": t.train_config.hash(),
                    "data": self.data.data_id}
        if self.data.degradation != "bicubic":
            identity["degradation"] = self.data.degradation
        if t.min_shift_consistency is not None:
            identity["min_shift_consistency"] = t.min_shift_consistency
        return identity

    def _check_study_settings(self, created: bool) -> None:
        """The study's creator seeds it (warm starts, then its identity); any other worker checks that it
        runs the same settings. Workers starting at once never both seed it (create_or_load_study)."""
        identity = self._identity()
        if created:
            if self.config.warm_start:
                space = self.target.space
                for name, spec in space.fitting_references(self.target.input_size)[0].items():
                    self.study.enqueue_trial(space.params_of(spec), user_attrs={"reference": name})
            self.study.set_user_attr("identity", identity)
            return
        stored = self._stored_identity()
        if stored is None:  # its creator stopped before seeding it: adopt it, without warm starts
            self.study.set_user_attr("identity", identity)
        elif stored != identity:
            changed = sorted(k for k in identity if stored.get(k) != identity[k])
            raise UsageError(f"study '{self.study_name}' was created with other settings ({', '.join(changed)} "
                             "differ): use another --study name or the same settings")

    def _stored_identity(self) -> dict[str, Any] | None:
        """The study's identity; in a shared study, waits a while for a creator that is still seeding it."""
        deadline = time.monotonic() + (IDENTITY_WAIT_S if self.config.storage is not None else 0)
        while True:
            stored = self.study.user_attrs.get("identity")
            if stored is not None or time.monotonic() >= deadline:
                return stored
            time.sleep(0.2)

    def _note_contention(self, latency: Any, number: int, tally: Tally) -> None:
        """Count CPU measurements timed beside busy processes, and say so once: they are stored as measured."""
        if not latency.contended:
            return
        tally.contended += 1
        if tally.contended == 1:
            self.say(f"warning: other processes used {latency.background_cpus:.1f} CPUs while trial {number} was "
                     "timed; CPU latencies measured beside busy processes come out too high and are stored as "
                     "measured: search on a quiet machine (the summary counts contended measurements)")

    # ------------------------------------------------------------------ one trial
    def _trial(self, trial: Any, tally: Tally) -> None:
        from optuna.trial import TrialState

        from latency_db import measure_or_get
        from search_spaces import count

        target = self.target
        spec = target.space.sample(trial, target.input_size)
        arch_id = spec.arch_id
        workload = target.workload
        counts = count(spec, *target.input_size, bytes_per_element=workload.bytes_per_element)
        trial.set_user_attr("arch_id", arch_id)
        trial.set_user_attr("spec", spec.canonical_json())
        trial.set_user_attr("summary", spec.summary())
        trial.set_user_attr("counts", {"macs": counts.macs, "params": counts.params,
                                       "bytes_moved": counts.bytes_moved})
        self.writer.write_arch(spec)

        predicted = self.guard.predict(spec)
        if predicted is not None:
            trial.set_user_attr("predicted_ms", predicted)
        if self.guard.screens_out(spec, predicted):  # never measured nor trained
            trial.set_user_attr("predicted_over_budget", True)
            latency_gate(self.study, trial, predicted, target.budget)
            return
        latency = measure_or_get(spec, workload, target.backend, self.store,  # takes the device lock
                                 details=self.guard.details())
        latency = self.guard.after_measure(spec, latency, predicted)
        tally.lock_wait_s += latency.lock_wait_s
        tally.measure_s += latency.measure_s - latency.lock_wait_s
        tally.latency_hits += int(latency.cached)
        self._note_contention(latency, trial.number, tally)
        record = latency.to_dict()
        self.writer.write_latency(arch_id, record)
        trial.set_user_attr("latency_record", record)  # the whole latency.json: any worker can rebuild it
        trial.set_user_attr("latency", {
            "median_ms": latency.median_ms, "p90_ms": latency.p90_ms, "cov": latency.cov,
            "roofline_ms": latency.roofline_ms, "cached": latency.cached, "measure_s": latency.measure_s,
            "unstable": latency.unstable,
        })
        if latency.error is not None:
            trial.set_user_attr("error", f"measurement failed: {latency.error}")
            self.study.tell(trial, state=TrialState.FAIL)
            return
        value = target.budget.value_of(latency)
        if not latency_gate(self.study, trial, value, target.budget):
            return

        def on_rung(step: int, gain_db: float) -> bool:
            """Report the gain at a rung; True when the pruner stops the training there."""
            if not math.isfinite(gain_db):  # not yet moved: the full training decides whether it failed
                return False
            trial.report(gain_db, step)
            return trial.should_prune()

        result, cached, waited_s = self.train_cache.train(spec, self.data, target.train_config, target.backend,
                                                          target.device, self.pruning.rungs, on_rung)
        trial.set_user_attr("train_cached", cached)
        tally.lock_wait_s += waited_s
        spent_s = 0.0 if cached else result.train_s - result.resumed_s  # a resumed training paid only the rest
        tally.train_hits += int(cached)
        tally.resumed += int(result.resumed_from is not None)
        tally.train_s += spent_s
        self.writer.write_training(arch_id, result, target.train_config.to_dict(), target.train_config.hash())
        trial.set_user_attr("train", {
            "psnr_db": result.psnr_db, "bicubic_psnr_db": result.bicubic_psnr_db, "ssim": result.ssim,
            "psnr_gain_db": result.psnr_gain_db, "train_s": spent_s, "resumed_from": result.resumed_from,
            "moved": result.moved, "shift_consistency_db": result.shift_consistency_db,
            "temporal_psnr_db": result.temporal_psnr_db,
        })
        if result.stopped_at is not None:  # behind at a rung: PRUNED with its last gain, never a failure
            trial.set_user_attr("pruned_at_step", result.stopped_at)
            tally.stopped += 1
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        if not result.moved or not math.isfinite(result.psnr_gain_db):
            trial.set_user_attr("error", "training failed: the network did not move from its classical "
                                         "baseline (dead ReLUs?); not a verdict on the architecture")
            self.study.tell(trial, state=TrialState.FAIL)
            return
        floor = target.min_shift_consistency
        if floor is not None and not result.shift_consistency_db >= floor:  # NaN (nothing measured) fails too
            trial.set_user_attr("error", f"shift consistency {result.shift_consistency_db:.2f} dB is below "
                                         f"--min-shift-consistency {floor:g} dB: trained, but not eligible")
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        self.study.tell(trial, result.psnr_gain_db)
        if tally.best_gain is None or result.psnr_gain_db > tally.best_gain:
            tally.best_gain, tally.best_latency = result.psnr_gain_db, value

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:

        self._setup()
        cfg = self.config
        tally = Tally()
        self.guard.start()
        mine = self._my_trials()
        self.say(f"study '{self.study_name}' in {self.run_dir}: {len(mine)} of {cfg.trials} trials done")
        progress = Progress(cfg.trials, self.quiet)
        stop = StopFlag()
        progress.update(tally, len(mine))
        shared = cfg.storage is not None  # other workers may run this study: announce this one
        interval, grace = heartbeat_settings()
        beacon = WorkerBeacon(self.study, self.run_dir, cfg.trials, interval) if shared else None
        if beacon is not None:
            beacon.start()
        try:
            self._loop(mine, tally, progress, stop)
        finally:
            if beacon is not None:
                beacon.done()
        progress.close()
        if beacon is not None and not stop.requested:
            gone = wait_for_workers(self.study, beacon.key, interval, grace, self.say)
            if gone:
                self.say(f"gave up waiting for {len(gone)} silent worker(s) (no beat for {grace} s): "
                         f"{', '.join(gone)}")
        return self._finish(tally, interrupted=stop.requested)

    def _loop(self, mine: list[int], tally: Tally, progress: Progress, stop: StopFlag) -> None:
        """Ask, run and record trials until this run dir has done its share and the retries of its own killed
        trials are done, or Ctrl-C."""
        from optuna.trial import TrialState

        cfg = self.config
        with stop.installed(self.say):
            while (len(mine) < cfg.trials or waiting_retries(self.study, self.run_dir)) and not stop.requested:
                if tally.n_done and cfg.timeout_s is not None and time.perf_counter() - tally.started >= cfg.timeout_s:
                    tally.timed_out = True
                    self.say(f"--timeout {cfg.timeout_s:g} s reached after {tally.n_done} trials: stopping "
                             "(rerun the same command to go on)")
                    break
                trial = ask(self.study, self.run_dir)  # may be a dead worker's trial, retried here
                trial.set_user_attr("run_dir", str(self.run_dir.resolve()))
                try:
                    with heartbeat(self.study, trial):
                        self._trial(trial, tally)
                except KeyboardInterrupt:
                    self.study.tell(trial, state=TrialState.FAIL)
                    self._finish(tally, interrupted=True)
                    raise
                except NasError:
                    self.study.tell(trial, state=TrialState.FAIL)
                    raise
                mine.append(trial.number)
                tally.n_done += 1
                progress.update(tally, len(mine))
                self.writer.write_trials(self.rows())

    def _my_trials(self) -> list[int]:
        """Finished trials of this run dir; a stale trial that another worker retries does not count."""
        here = str(self.run_dir.resolve())
        trials = self.study.get_trials(deepcopy=False)
        retried = retried_trial_numbers(trials)
        return [t.number for t in trials
                if t.user_attrs.get("run_dir") == here and t.state.is_finished() and t.number not in retried]

    # ------------------------------------------------------------------ outputs
    def rows(self) -> list[TrialRow]:
        """The study's finished trials as trials.csv rows."""
        return [trial_row(t.number, t.state.name, t.user_attrs, self.target.budget)
                for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]

    def _summary(self, rows: list[TrialRow], tally: Tally) -> dict[str, Any]:
        counts = summarize(rows)
        best = counts.pop("best")
        return {
            **counts,
            "n_predicted_over_budget": sum(1 for t in self.study.get_trials(deepcopy=False)
                                           if t.user_attrs.get("predicted_over_budget")),
            "this_run": {"trials": tally.n_done, "latency_cache_hits": tally.latency_hits,
                         "train_cache_hits": tally.train_hits, "resumed_trainings": tally.resumed,
                         "timed_out": tally.timed_out,
                         "contended_measurements": tally.contended,
                         "predictor": self.guard.mode, "screened": self.guard.screened,
                         "remeasured": self.guard.remeasured, "canary": self.guard.canary_summary()},
            "measure_s": round(tally.measure_s, 3), "train_s": round(tally.train_s, 3),
            "lock_wait_s": round(tally.lock_wait_s, 3), "wall_s": round(time.perf_counter() - tally.started, 3),
            "best": best,
        }

    def _finish(self, tally: Tally, interrupted: bool) -> dict[str, Any]:
        """The run dir made whole: every finished trial of the study (other workers' too), its summary."""
        self.interrupted = interrupted
        done = materialize(self.study, self.writer, self.train_cache, self.target.budget)
        if done.missing_weights:
            self.say(f"warning: the weights of trial(s) {', '.join(map(str, done.missing_weights))} (trained by "
                     "other workers) are not in this worker's training cache: give every worker the same "
                     "--latency-db (PostgreSQL) so that each run dir can report on and export the whole study")
        rows = done.rows
        summary = self._summary(rows, tally)
        self._write_run_json(summary, interrupted)
        self.summary = summary
        return summary

    def _run_meta(self) -> dict[str, Any]:
        """run.json's settings: what every worker of the study shares (published on the study)."""
        cfg, t = self.config, self.target
        config = {
            "task": t.space.name, "budget_ms": t.budget.limit_ms, "budget_stat": t.budget.stat,
            "backend": t.backend.name, "input_size": list(t.input_size), "trials": cfg.trials,
            "train_steps": t.train_config.steps, "seed": cfg.seed, "sampler": cfg.sampler,
            "storage": mask_url(cfg.storage), "study": self.study_name,
            "latency_db": mask_url(t.latency_db), "data": t.data, "val_data": t.val_data,
            "loss": t.train_config.loss, "noise_sigma": t.train_config.noise_sigma, "warm_start": cfg.warm_start,
            "degradation": t.degradation, "jpeg_quality": t.jpeg_quality, "val_sequence": t.val_sequence,
            "min_shift_consistency": t.min_shift_consistency, "predictor": cfg.predictor,
            "pruner": cfg.pruner, "rungs": list(self.pruning.rungs), "timeout_s": cfg.timeout_s,
        }
        return {
            "nas_version": __version__, "study": self.study_name, "config": config,
            "train_config": t.train_config.to_dict(), "versions": versions(),
            "backend": t.backend.name, "device": t.fingerprint, "workload": t.workload.to_dict(),
            "references": {n: s.arch_id for n, s in t.space.fitting_references(t.input_size)[0].items()},
            "data": self.data.describe(),
        }

    def _write_run_json(self, summary: dict[str, Any] | None, interrupted: bool = False) -> None:
        """run.json: written when the run starts (summary null) and again when it ends."""
        meta = self._run_meta()
        meta["config"] = {**meta["config"], "run_dir": str(self.run_dir)}
        self.writer.write_run_json({
            **meta, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
            "interrupted": interrupted, "summary": summary,
        })

    def no_feasible_message(self) -> str:
        budget, floor = self.target.budget, self.target.min_shift_consistency
        rows = self.rows()
        steady = [r for r in rows if r.trained and r.shift_consistency_db is not None]
        if floor is not None and steady:
            top = max(steady, key=lambda r: r.shift_consistency_db or 0.0)
            return (f"no trained candidate reaches --min-shift-consistency {floor:g} dB: the steadiest scored "
                    f"{top.shift_consistency_db:.1f} dB (trial {top.number}); lower the floor or search longer")
        measured = [(budget.value(r.latency_ms, r.latency_p90_ms), r) for r in rows]
        measured = [(v, r) for v, r in measured if v is not None]
        if not measured:
            return "no candidate could be measured; see the error column of trials.csv"
        value, fastest = min(measured, key=lambda vr: vr[0])
        need = math.ceil(value * 100) / 100
        return (f"no architecture meets the {budget.limit_ms:g} ms budget: the fastest candidate "
                f"measured {value:.3f} ms ({budget.stat}, trial {fastest.number}); "
                f"--budget-ms {need:g} would admit it")
