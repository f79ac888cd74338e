"""Optuna study driver: sample -> latency gate -> short train -> record (docs/architecture.md).

One objective (maximize validation PSNR gain over bicubic, dB) under one constraint (latency minus
budget <= 0, reported with ``trial.set_constraint``). A candidate over the budget is told PRUNED
right after its measurement: it is never trained; TPE ranks it as infeasible by how far it missed
(tests/test_search_gate.py), and the default evolution sampler shrinks the nets it derives from it
(nas/search/samplers.py). With ``--pruner`` a candidate in the budget reports its validation gain at
a few rungs and is stopped (PRUNED with ``pruned_at_step``) when it is behind. Latency comes from the
latency database first; training results from a training cache keyed by arch_id + training-config
hash + data fingerprint.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from nas.errors import NasError
from nas.rundir import RunDirWriter, TrialRow, best_trial, run_json, run_meta, summarize, trial_row
from nas.search.config import PRUNERS, SAMPLERS, SearchConfig, default_study_name
from nas.search.finalists import finalists_summary, train_finalists, with_finals
from nas.search.latency_guard import LatencyGuard
from nas.search.precision import PrecisionPlan, int8_quality
from nas.search.progress import Progress, StopFlag, Tally
from nas.search.shared_study import (
    WorkerBeacon,
    materialize,
    publish_run_meta,
    seed_or_check,
    study_identity,
    wait_for_workers,
)
from nas.search.storage import (
    ask,
    create_or_load_study,
    heartbeat,
    heartbeat_settings,
    mask_url,
    open_optuna_storage,
    retried_trial_numbers,
    waiting_retries,
)
from nas.search.targets import TargetSet
from nas.search.verification import settle_close_call, verification_summary, verify_finalists
from nas.target import Budget, Target
from nas.trial_record import TrialRecord, TrialRecorder


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
        self.writer = RunDirWriter(self.run_dir, tuple(t.name for t in target.targets))
        self.targets: TargetSet | None = None  # --target: the devices measured, each with its budget
        self.interrupted = False
        self.summary: dict[str, Any] | None = None
        self.verified: dict[int, dict[str, Any]] = {}  # trial number -> latency re-timed before naming the winner
        self.finals: dict[int, dict[str, Any]] = {}  # trial number -> a finalist's longer training (finalists.py)

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"nas search: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        import optuna

        from nas.training.train_cache import TrainCache

        cfg, target = self.config, self.target
        self.writer.check(self.study_name)
        self.data = target.load_data()
        remote = cfg.storage is not None and "://" in cfg.storage  # before the latency DB: a bad URL writes nothing
        storage = open_optuna_storage(cfg.storage, self.run_dir / "study.journal") if remote else None
        self.store = target.open_store()
        self.train_cache = TrainCache(self.store.shared_engine)
        held: list[str] = []  # the guard's notes wait until every check has passed (a refused run says one line)
        self.guard = LatencyGuard(cfg.predictor, target.backend, self.store, target.workload, target.space,
                                  target.input_size, target.budget, held.append)
        if target.targets:  # a target without a live agent is refused here, before anything is written
            self.targets = TargetSet(target, self.store, self.guard, cfg.target_timeout_s, self.say)
            held.extend(self.targets.notes())
            if not self.targets.has_local:
                self.guard.canary = None  # nothing is timed on this machine
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
        space = target.space
        self.plan = PrecisionPlan(target)
        sampler = SAMPLERS.get(cfg.sampler)(target.budget, self._sampler_seed(), self.guard.guide(),
                                            self.plan.evolution(space, target.input_size))
        self.study, created = create_or_load_study(self.study_name, storage, sampler, self.pruning.pruner)
        warm = {name: self.plan.warm(space.params_of(spec))
                for name, spec in space.fitting_references(target.input_size)[0].items()}
        seed_or_check(self.study, self.study_name, study_identity(target, self.data), created,
                      warm if cfg.warm_start else {}, shared=cfg.storage is not None)
        self.meta = run_meta(target, cfg, self.study_name, self.pruning.rungs, mask_url(target.latency_db),
                             mask_url(cfg.storage), self.data.describe())
        if self.targets is not None:
            self.meta["targets"] = self.targets.describe()
        publish_run_meta(self.study, self.meta)
        self.writer.write_run_json(run_json(self.meta, self.run_dir, None))

    def _sampler_seed(self) -> int:
        """--seed alone for a study of its own; mixed with the run dir when --storage shares the study, so
        that workers started with the same command do not all sample the same candidates."""
        if self.config.storage is None:
            return self.config.seed
        return (self.config.seed + zlib.crc32(str(self.run_dir.resolve()).encode())) % 2**32

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
        """One candidate, as a list of steps; a step that settles the trial (tells Optuna) returns None."""
        record = TrialRecorder(trial)
        spec = self._propose(trial, record)
        precision = self.plan.choose(trial)
        if self.plan.given:
            record.precision(precision)
        latency_ms = self._measure(spec, trial, record, tally, precision)
        if latency_ms is None:
            return
        result = self._train(spec, trial, record, tally, precision)
        if result is None:
            return
        self._judge(trial, record, result, latency_ms, tally)

    def _propose(self, trial: Any, record: TrialRecorder) -> Any:
        """The sampler's candidate, validated (canonical), recorded on the trial and in the run dir. A network the
        study already has (TPE and random may draw one again) costs no measuring or training: the latency
        database and the training cache answer by its arch_id."""
        from search_spaces import count

        target = self.target
        spec = target.space.sample(trial, target.input_size)
        record.candidate(spec, count(spec, *target.input_size,
                                     bytes_per_element=target.workload.bytes_per_element))
        self.writer.write_arch(spec)
        return spec

    def _measure(self, spec: Any, trial: Any, record: TrialRecorder, tally: Tally, precision: str) -> float | None:
        """The latency that counts (cache first), through the gate; None when the trial is settled here
        (screened out by the predictor, failed to measure, or over the budget)."""
        from optuna.trial import TrialState

        from latency_db import measure_or_get

        if self.targets is not None:
            return self.targets.gate(spec, self.study, trial, record, self.writer, tally)
        target = self.plan.targets[precision]
        predicted = self.guard.predict(spec) if target is self.target else None  # the predictor knows one precision
        if predicted is not None:
            record.predicted(predicted)
        if self.guard.screens_out(spec, predicted):  # never measured nor trained
            record.screened_out()
            latency_gate(self.study, trial, predicted, target.budget)
            return None
        latency = measure_or_get(spec, target.workload, target.backend, self.store,  # takes the device lock
                                 details=self.guard.details())
        latency = self.guard.after_measure(spec, latency, predicted)
        first = latency
        latency = settle_close_call(target, self.store, spec, latency, self.guard.details())
        tally.count_measurement(latency, retimed=latency is not first)
        self._note_contention(latency, trial.number, tally)
        self.writer.write_latency(spec.arch_id, latency.to_dict(), self.plan.folder(precision))
        record.measured(latency)
        if latency.error is not None:
            record.failed(f"measurement failed: {latency.error}")
            self.study.tell(trial, state=TrialState.FAIL)
            return None
        value = target.budget.value_of(latency)
        return value if latency_gate(self.study, trial, value, target.budget) else None

    def _train(self, spec: Any, trial: Any, record: TrialRecorder, tally: Tally, precision: str) -> Any:
        """The short training (cache first; the pruner may stop it at a rung, which settles the trial); an int8
        trial is then scored as its int8 net (post-training quantized, quantization-aware fine-tuned if needed)."""
        from optuna.trial import TrialState

        target = self.target

        def on_rung(step: int, gain_db: float) -> bool:
            """Report the gain at a rung; True when the pruner stops the training there."""
            if not math.isfinite(gain_db):  # not yet moved: the full training decides whether it failed
                return False
            trial.report(gain_db, step)
            return trial.should_prune()

        result, cached, waited_s = self.train_cache.train(spec, self.data, target.train_config, target.backend,
                                                          target.device, self.pruning.rungs, on_rung)
        tally.lock_wait_s += waited_s
        spent_s = 0.0 if cached else result.train_s - result.resumed_s  # a resumed training paid only the rest
        tally.train_hits += int(cached)
        tally.resumed += int(result.resumed_from is not None)
        tally.train_s += spent_s
        if precision == "int8" and result.stopped_at is None and result.moved:
            result, int8, int8_cached = int8_quality(spec, result, self.data, self.plan.targets[precision],
                                                     self.store.shared_engine)
            spent_s += 0.0 if int8_cached else int8.int8_s
            tally.train_s += 0.0 if int8_cached else int8.int8_s
            record.quantized(int8)
            self.writer.write_int8(spec.arch_id, int8)
        self.writer.write_training(spec.arch_id, result, target.train_config.to_dict(), target.train_config.hash(),
                                   self.plan.folder(precision))
        record.trained(result, cached, spent_s)
        if result.stopped_at is not None:  # behind at a rung: PRUNED with its last gain, never a failure
            record.stopped_at(result.stopped_at)
            tally.stopped += 1
            self.study.tell(trial, state=TrialState.PRUNED)
            return None
        return result

    def _judge(self, trial: Any, record: TrialRecorder, result: Any, latency_ms: float, tally: Tally) -> None:
        """Tell Optuna the trained candidate's gain, or why it is not eligible."""
        from optuna.trial import TrialState

        if not result.moved or not math.isfinite(result.psnr_gain_db):
            record.failed("training failed: the network did not move from its classical baseline (dead ReLUs?); "
                          "not a verdict on the architecture")
            self.study.tell(trial, state=TrialState.FAIL)
            return
        floor = self.target.min_shift_consistency
        if floor is not None and not result.shift_consistency_db >= floor:  # NaN (nothing measured) fails too
            record.failed(f"shift consistency {result.shift_consistency_db:.2f} dB is below "
                          f"--min-shift-consistency {floor:g} dB: trained, but not eligible")
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        self.study.tell(trial, result.psnr_gain_db)
        if tally.best_gain is None or result.psnr_gain_db > tally.best_gain:
            tally.best_gain, tally.best_latency = result.psnr_gain_db, latency_ms

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
        # Re-timed here only, and only in a study of its own: workers of a shared study would each re-time the
        # finalists and name different latencies (a shared verification round is not built yet; docs/latency.md).
        local = self.targets is None or self.targets.first_is_local
        if not stop.requested and local and not shared:
            rows = self.rows()
            for precision, target in self.plan.targets.items():  # each precision's finalists on its own rows
                mine = [r for r in rows if r.precision in (precision, "")]
                self.verified.update(verify_finalists(mine, target, self.store, self.run_dir, self.say, cfg.finalists))
        if not stop.requested and not shared and cfg.finalists and "int8" not in self.plan.targets:  # docs/cli.md
            self.finals = train_finalists(self.rows(), cfg, self.target, self.data, self.train_cache, self.writer,
                                          self.say)
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
                TrialRecorder(trial).claimed_by(self.run_dir)
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
        trials = self.study.get_trials(deepcopy=False)
        retried = retried_trial_numbers(trials)
        return [t.number for t in trials if t.state.is_finished() and t.number not in retried
                and TrialRecord.of(t.user_attrs).belongs_to(self.run_dir)]

    # ------------------------------------------------------------------ outputs
    def rows(self) -> list[TrialRow]:
        """The study's finished trials as trials.csv rows."""
        return [trial_row(t.number, t.state.name, TrialRecord.of(t.user_attrs), self.target.budget, self.verified)
                for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]

    def _summary(self, rows: list[TrialRow], tally: Tally) -> dict[str, Any]:
        counts = summarize(rows)
        best = counts.pop("best")
        return {
            **counts,
            "n_predicted_over_budget": sum(1 for t in self.study.get_trials(deepcopy=False)
                                           if TrialRecord.of(t.user_attrs).predicted_over_budget),
            "this_run": {"trials": tally.n_done, "latency_cache_hits": tally.latency_hits,
                         "train_cache_hits": tally.train_hits, "resumed_trainings": tally.resumed,
                         "timed_out": tally.timed_out,
                         "contended_measurements": tally.contended, "close_calls_retimed": tally.close_calls,
                         "measurements_that_waited_for_quiet": tally.quiet_waits,
                         "measurements_that_waited_out_a_slow_spell": tally.spell_waits,
                         "predictor": self.guard.mode, "screened": self.guard.screened,
                         "remeasured": self.guard.remeasured, "canary": self.guard.canary_summary(),
                         **({"target_wait_s": round(self.targets.waited_s, 3)} if self.targets else {})},
            "measure_s": round(tally.measure_s, 3), "train_s": round(tally.train_s, 3),
            "lock_wait_s": round(tally.lock_wait_s, 3), "wall_s": round(time.perf_counter() - tally.started, 3),
            "best": best,
            "verification": verification_summary(rows, self.verified),
            "finalists": finalists_summary(self.finals, best_trial(rows)),
        }

    def _finish(self, tally: Tally, interrupted: bool) -> dict[str, Any]:
        """The run dir made whole: every finished trial of the study (other workers' too), its summary."""
        self.interrupted = interrupted
        done = materialize(self.study, self.writer, self.train_cache, self.target.budget, self.verified)
        if done.missing_weights:
            self.say(f"warning: the weights of trial(s) {', '.join(map(str, done.missing_weights))} (trained by "
                     "other workers) are not in this worker's training cache: give every worker the same "
                     "--latency-db (PostgreSQL) so that each run dir can report on and export the whole study")
        rows = with_finals(done.rows, self.finals)
        if self.finals:
            self.writer.write_trials(rows)
        summary = self._summary(rows, tally)
        self.writer.write_run_json(run_json(self.meta, self.run_dir, summary, interrupted))
        self.summary = summary
        return summary

    def no_feasible_message(self) -> str:
        budget, floor = self.target.budget, self.target.min_shift_consistency
        rows = self.rows()
        if self.targets is not None and any(r.rejected_by for r in rows):
            return self.targets.no_feasible_message(rows)
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
