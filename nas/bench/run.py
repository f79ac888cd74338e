"""`nas bench`: does the search beat hand-designed networks, and blind search, at equal latency?

Per budget and seed it runs one ordinary search (``Search``) per sampler, the search's own (the
first of ``samplers``, budget-aware evolution by default) and Optuna's RandomSampler as the blind
control, with the same trials and training steps; all enqueue the reference networks as their first
trials. Every search has its own run dir under ``out/<budget>ms/<sampler>-seed<k>/`` and
all share one latency database and its training cache, so a candidate is measured once and an
(arch, training config) is trained once across the whole bench. Plain bicubic and bilinear are
timed as graphs that hold only the classical resize. Afterwards each budget's winner and every
reference are trained ``long_steps`` steps, to check with a Spearman rank correlation that the
short training ranks networks as a longer one does. Writes ``bench.json`` and ``bench.md``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.baseline.load import load_baselines
from nas.bench.baselines import bench_baselines
from nas.errors import UsageError
from nas.rundir import RunDir
from nas.search.config import SearchConfig
from nas.search.driver import Search
from nas.search.precision import int8_quality, precision_target
from nas.search.storage import mask_url
from nas.target import Budget, Target

if TYPE_CHECKING:
    from torch import nn

    from nas.training.train import TrainConfig, TrainResult
    from search_spaces import Counts
from nas.bench.config import (
    CLASSICAL,
    LONG_FACTOR,
    RESIZE_TAPS,
    BenchConfig,
    finite,
    loadavg,
    spearman,
    spread,
)
from nas.bench.judge import classical_scores, targets
from nas.bench.render import db_text, ms_text, render_md


@dataclass(frozen=True)
class ClassicalResize:
    """A graph holding only a classical upsampling, no learned layer: how plain bicubic / bilinear is timed.

    The search space requires at least one learned layer, so this is a latency_db candidate of its
    own (like the sweep's conv probes): latency_db checks such candidates against a scale-1 workload
    of ``channels`` inputs, and the x``scale`` upsampling is part of the graph and of its arch_id.
    """

    mode: str
    scale: int
    channels: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {"probe": "classical_resize", "mode": self.mode, "scale": self.scale, "channels": self.channels}

    @property
    def arch_id(self) -> str:
        from latency_db.fingerprint import digest

        return "resize-" + digest(self.to_dict())

    def summary(self) -> str:
        return f"plain {self.mode} x{self.scale} (Resize only, no learned layer)"

    def build(self) -> nn.Module:
        from search_spaces.network import ClassicalUpsample

        return ClassicalUpsample(self.scale, self.mode).eval()

    def count(self, height: int, width: int, batch: int, bytes_per_element: int) -> Counts:
        from search_spaces import Counts

        outputs = batch * self.channels * height * width * self.scale ** 2
        inputs = batch * self.channels * height * width
        return Counts(macs=RESIZE_TAPS.get(self.mode, 1) * outputs, params=0,
                      activation_bytes=(inputs + outputs) * bytes_per_element, weight_bytes=0)



def _train_result(result: TrainResult) -> dict[str, Any]:
    return {"psnr_gain_db": result.psnr_gain_db, "psnr_db": result.psnr_db, "ssim": result.ssim,
            "bicubic_psnr_db": result.bicubic_psnr_db, "moved": result.moved, "train_s": result.train_s}


class Bench:
    """One bench in one output folder; ``run()`` returns the bench.json object."""

    def __init__(self, config: BenchConfig, quiet: bool = False) -> None:
        config.validate()
        self.config = config
        self.quiet = quiet
        self.out = Path(config.out)
        self.interrupted = False
        self.searches: dict[tuple[float, str, int], Search] = {}
        self.targets: dict[tuple[float, int], Target] = {}

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"nas bench: {message}", file=sys.stderr, flush=True)

    def run_dir(self, budget: float, sampler: str, seed: int) -> Path:
        return self.out / f"{budget:g}ms" / f"{sampler}-seed{seed}"

    # ------------------------------------------------------------------ the searches
    def target(self, budget: float, seed: int) -> Target:
        """The target of the searches at one budget and seed (the seed is part of the training config)."""
        key = (budget, seed)
        if key not in self.targets:
            cfg = self.config
            self.targets[key] = Target.resolve(budget=Budget(budget), task=cfg.task, backend=cfg.backend,
                                               input_size=cfg.input_size, seed=seed, train_steps=cfg.train_steps,
                                               reparam=cfg.reparam, train_dtype=cfg.train_dtype,
                                               latency_db=cfg.latency_db,
                                               precision=cfg.precision)
        return self.targets[key]

    def _search(self, budget: float, sampler: str, seed: int) -> Search | None:
        """One ordinary search and its report; None when it was interrupted (rerunning the bench resumes it)."""
        from nas.report import write_report

        # every candidate measured: a predictor screening some samplers' trials would make them unequal
        # the finalists train as long as the bench's long training by default: those trainings are then the same
        config = SearchConfig(trials=self.config.trials, seed=seed, sampler=sampler,
                              run_dir=str(self.run_dir(budget, sampler, seed)), predictor="off",
                              finalists=self.config.finalists,
                              final_steps=self.config.final_steps or self.config.long_steps)
        search = Search(self.target(budget, seed), config, quiet=self.quiet)
        summary = search.run()
        if search.interrupted:
            return None
        if summary["best"] is not None:
            write_report(search.run_dir)
        return search

    def _run_record(self, budget: float, sampler: str, seed: int, search: Search) -> dict[str, Any]:
        summary = search.summary
        assert summary is not None  # a finished search
        rows = RunDir.load(search.run_dir).trials
        over = [r for r in rows if r.over_budget]
        gate_ok = all(not r.trained and (r.train_s or 0.0) == 0.0 for r in over)
        best = summary["best"]
        best_row = next((r for r in rows if best and r.number == best["trial"]), None)
        measure_s, train_s, wall_s = summary["measure_s"], summary["train_s"], summary["wall_s"]
        return {
            "budget_ms": budget, "sampler": sampler, "seed": seed, "run_dir": str(search.run_dir),
            "n_trials": summary["n_trials"], "n_trained": summary["n_trained"], "n_failed": summary["n_failed"],
            "n_over_budget": len(over), "gate_ok": gate_ok,
            "over_budget_train_s": sum(r.train_s or 0.0 for r in over),
            "n_measured": summary["this_run"]["trials"] - summary["this_run"]["latency_cache_hits"],
            "time_s": {"measure": measure_s, "train": train_s, "lock_wait": summary["lock_wait_s"],
                       "other": max(0.0, wall_s - measure_s - train_s), "wall": wall_s},
            "best": None if best is None else {
                "trial": best["trial"], "arch_id": best["arch_id"], "summary": best["summary"],
                "reference": best["reference"], "latency_ms": best["latency_ms"],
                "psnr_gain_db": best["psnr_gain_db"], "ssim": best_row.ssim if best_row else None,
                "final_steps": best["final_steps"], "final_psnr_gain_db": best["final_psnr_gain_db"],
                "psnr_db": best_row.psnr_db if best_row else None,
                "precision": best_row.precision if best_row else "",
            },
        }

    # ------------------------------------------------------------------ the whole bench
    def run(self) -> dict[str, Any]:
        cfg = self.config
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        load_before, t0 = loadavg(), time.perf_counter()
        runs: list[dict[str, Any]] = []
        baselines = load_baselines(list(cfg.baselines), self.target(cfg.budgets[0], cfg.seeds[0]))  # before writing
        plan = [(b, sampler, s) for b in cfg.budgets for s in cfg.seeds for sampler in cfg.samplers]
        counts_before = self._db_counts()
        for i, (budget, sampler, seed) in enumerate(plan, 1):
            self.say(f"[{i}/{len(plan)}] budget {budget:g} ms, {sampler}, seed {seed}: "
                     f"{self.run_dir(budget, sampler, seed)}")
            search = self._search(budget, sampler, seed)
            if search is None:
                self.interrupted = True
                return {}
            self.searches[(budget, sampler, seed)] = search
            record = self._run_record(budget, sampler, seed, search)
            runs.append(record)
            best = record["best"]
            shown = "nothing under the budget" if best is None else \
                f"best {best['psnr_gain_db']:+.3f} dB @ {best['latency_ms']:.3f} ms"
            self.say(f"[{i}/{len(plan)}] {shown}; {record['n_over_budget']} over budget (not trained), "
                     f"{record['n_measured']} measured, {record['time_s']['wall']:.0f} s")
        first = next(iter(self.searches.values()))
        t_refs = time.perf_counter()
        references = self._references(first)
        t_long = time.perf_counter()
        long = self._long_training(first, runs)
        mine = bench_baselines(baselines, first, self._long_steps(first), self.say)
        budgets = [self._budget_table(b, runs, references) for b in cfg.budgets]
        long["judged"] = self._long_judged(first, runs, budgets, references)
        target = first.target
        phase_s = {"searches": t_refs - t0, "references": t_long - t_refs, "long": time.perf_counter() - t_long}
        counts_after = self._db_counts()
        result = {
            "nas_bench_version": 1, "started": started,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv, "config": {**asdict(cfg), "long_steps": self._long_steps(first)},
            "machine": {"device": target.device_name, "cpus": os.cpu_count(),
                        "platform": platform.platform(), "loadavg_before": load_before, "loadavg_after": loadavg()},
            "backend": target.backend.name, "protocol": target.backend.protocol.name,
            "input_size": list(target.input_size), "train_config": target.train_config.to_dict(),
            "data": first.data.describe(), "latency_db": mask_url(first.store.url),
            "wall_s": round(time.perf_counter() - t0, 1), "phase_s": {k: round(v, 1) for k, v in phase_s.items()},
            "new_latency_rows": counts_after[0] - counts_before[0],
            "new_trainings": counts_after[1] - counts_before[1],
            "references": references, "references_left_out": target.space.fitting_references(target.input_size)[1],
            "runs": runs,
            "budgets": budgets,
            "long": long,
            **({"baselines": mine} if mine else {}),
        }
        result["targets"] = targets(result)
        self._write(result)
        return result

    def _db_counts(self) -> tuple[int, int]:
        """(latency rows, training-cache rows) in the shared database: the bench's difference is what it
        measured and trained, whatever process did it."""
        import sqlalchemy as sa

        from latency_db import StoreError, open_store
        from nas.training.train_cache import TrainCache, train_cache

        try:
            store = open_store(self.config.latency_db)
        except StoreError as exc:
            raise UsageError(f"--latency-db: {exc}") from None
        try:
            cache = TrainCache(store.shared_engine)
            with cache.engine.connect() as conn:
                trainings = int(conn.execute(sa.select(sa.func.count()).select_from(train_cache)).scalar_one())
            return store.count(), trainings
        finally:
            store.close()

    def _config_for(self, seed: int) -> TrainConfig:
        """The exact training config (and so cache key) the searches used with this seed."""
        return self.target(self.config.budgets[0], seed).train_config

    def _long_steps(self, search: Search) -> int:
        return self.config.long_steps or LONG_FACTOR * search.target.train_config.steps

    def _references(self, search: Search) -> dict[str, Any]:
        """Latency and short-training gain per seed of each reference net, plain bicubic and bilinear."""
        from latency_db import Workload, measure_or_get

        target = search.target
        out: dict[str, Any] = {}
        modern = target.space.modern_references()
        for name, spec in target.space.fitting_references(target.input_size)[0].items():
            lat = measure_or_get(spec, target.workload, target.backend, search.store)
            per_seed = {}
            for seed in self.config.seeds:
                result, _, _ = search.train_cache.train(spec, search.data, self._config_for(seed), target.backend,
                                                        target.device)
                per_seed[str(seed)] = _train_result(result)
            out[name] = self._reference_entry("modern" if name in modern else "net", spec.arch_id, spec.summary(),
                                              lat, per_seed)
        resize_workload = Workload(height=target.input_size[0], width=target.input_size[1], scale=1, channels=3,
                                   io_dtype=target.workload.io_dtype)
        scores = classical_scores(search.data, target.space.scale, target.train_config.noise_sigma)
        for mode in CLASSICAL:
            probe = ClassicalResize(mode, target.space.scale)
            lat = measure_or_get(probe, resize_workload, target.backend, search.store)
            gain = scores[mode]["psnr_db"] - scores["bicubic"]["psnr_db"]
            per_seed = {str(seed): {"psnr_gain_db": gain, "psnr_db": scores[mode]["psnr_db"],
                                    "ssim": scores[mode]["ssim"], "train_s": 0.0} for seed in self.config.seeds}
            out[mode] = self._reference_entry("classical", probe.arch_id, probe.summary(), lat, per_seed)
        for name, entry in out.items():
            self.say(f"reference {name}: {ms_text(entry['latency_ms'])} ms, gain {db_text(entry['gain']['mean'])} dB")
        return out

    @staticmethod
    def _reference_entry(kind: str, arch_id: str, summary: str, lat: Any,
                         per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {"kind": kind, "arch_id": arch_id, "summary": summary, "latency_ms": lat.median_ms,
                "latency_p90_ms": lat.p90_ms, "latency_error": lat.error, "latency_cached": lat.cached,
                "per_seed": per_seed, "gain": spread([r["psnr_gain_db"] for r in per_seed.values()]),
                "ssim": spread([r["ssim"] for r in per_seed.values()])}

    def _budget_table(self, budget: float, runs: list[dict[str, Any]],
                      references: dict[str, Any]) -> dict[str, Any]:
        """Per sampler: best found (mean ± sd over seeds), gate and time split; the best reference that fits."""
        table: dict[str, Any] = {"budget_ms": budget, "samplers": {}}
        for sampler in self.config.samplers:
            mine = [r for r in runs if r["budget_ms"] == budget and r["sampler"] == sampler]
            bests = [r["best"] for r in mine if r["best"] is not None]
            table["samplers"][sampler] = {
                "seeds_with_result": len(bests), "seeds": len(mine),
                "gain": spread([b["psnr_gain_db"] for b in bests]),
                "latency_ms": spread([b["latency_ms"] for b in bests]),
                "ssim": spread([b["ssim"] for b in bests]),
                "winners_are_references": sum(1 for b in bests if b["reference"]),
                "n_trials": sum(r["n_trials"] for r in mine),
                "n_over_budget": sum(r["n_over_budget"] for r in mine),
                "over_budget_train_s": sum(r["over_budget_train_s"] for r in mine),
                "gate_ok": all(r["gate_ok"] for r in mine),
                "time_s": {k: round(sum(r["time_s"][k] for r in mine), 1)
                           for k in ("measure", "train", "other", "wall")},
            }
        rule = self.target(budget, self.config.seeds[0]).budget  # the searches' own rule decides what fits
        fits = {n: e for n, e in references.items()
                if rule.admits_ms(e["latency_ms"]) and e["gain"]["mean"] is not None}
        best_ref = max(fits, key=lambda n: fits[n]["gain"]["mean"]) if fits else None
        table["best_reference"] = None if best_ref is None else {
            "name": best_ref, "latency_ms": fits[best_ref]["latency_ms"], "gain": fits[best_ref]["gain"],
            "ssim": fits[best_ref]["ssim"]}
        table["references_that_fit"] = sorted(fits)
        return table

    def _long_training(self, search: Search, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """Long training of each budget's winner (the search's, at the seed with the best short gain) and of every
        reference net (at the first seed); Spearman of short against long gain over those nets."""
        from search_spaces import ArchSpec

        long_steps = self._long_steps(search)
        first_seed = self.config.seeds[0]
        searcher = self.config.samplers[0]
        nets: dict[tuple[str, int], dict[str, Any]] = {}
        for budget in self.config.budgets:
            mine = [r for r in runs if r["budget_ms"] == budget and r["sampler"] == searcher and r["best"]]
            if not mine:
                continue
            win = max(mine, key=lambda r: r["best"]["psnr_gain_db"])
            spec = ArchSpec.from_json((Path(win["run_dir"]) / "archs" / win["best"]["arch_id"] / "arch.json")
                                      .read_text())
            label = f"winner {budget:g} ms ({searcher} seed {win['seed']})"
            nets.setdefault((spec.arch_id, win["seed"]), {"spec": spec, "labels": []})["labels"].append(label)
        target = search.target
        for name, spec in target.space.fitting_references(target.input_size)[0].items():
            nets.setdefault((spec.arch_id, first_seed), {"spec": spec, "labels": []})["labels"].append(
                f"{name} (seed {first_seed})")
        rows = []
        for n, ((arch_id, seed), net) in enumerate(nets.items(), 1):
            short_cfg = self._config_for(seed)
            short, _, _ = search.train_cache.train(net["spec"], search.data, short_cfg, target.backend, target.device)
            self.say(f"long training [{n}/{len(nets)}] {' = '.join(net['labels'])}: {long_steps} steps")
            long, _, _ = search.train_cache.train(net["spec"], search.data, replace(short_cfg, steps=long_steps),
                                                  target.backend, target.device)
            rows.append({"labels": net["labels"], "arch_id": arch_id, "seed": seed, "summary": net["spec"].summary(),
                         "short": _train_result(short), "long": _train_result(long)})
        pairs = [(r["short"]["psnr_gain_db"], r["long"]["psnr_gain_db"]) for r in rows
                 if math.isfinite(r["short"]["psnr_gain_db"]) and math.isfinite(r["long"]["psnr_gain_db"])]
        return {"short_steps": target.train_config.steps, "long_steps": long_steps,
                "which": f"each budget's {searcher} winner at the seed with the best short gain; every reference net "
                         f"at seed {first_seed}; bicubic and bilinear are left out (nothing to train)",
                "nets": rows, "n_pairs": len(pairs),
                "spearman": spearman([a for a, _ in pairs], [b for _, b in pairs])}

    def _long_judged(self, search: Search, runs: list[dict[str, Any]], budgets: list[dict[str, Any]],
                     references: dict[str, Any]) -> list[dict[str, Any]]:
        """Per budget and seed, the search's winner and the best fitting reference after the long training at that
        seed (a finalist's or the long table's training answers from the cache); a classical one trains nothing. An
        int8 winner is scored as its int8 net after the long training (quantized as the search scored it)."""
        from search_spaces import ArchSpec

        target, long_steps, out = search.target, self._long_steps(search), []
        refs = target.space.fitting_references(target.input_size)[0]
        for table in budgets:
            ref = (table["best_reference"] or {}).get("name")
            for run in runs:
                if run["budget_ms"] != table["budget_ms"] or run["sampler"] != self.config.samplers[0]:
                    continue
                config = replace(self._config_for(run["seed"]), steps=long_steps)
                gains: dict[str, float | None] = {"winner": None, "reference": None}
                if run["best"] is not None:
                    spec = ArchSpec.from_json((Path(run["run_dir"]) / "archs" / run["best"]["arch_id"] /
                                               "arch.json").read_text())
                    long = search.train_cache.train(spec, search.data, config, target.backend, target.device)[0]
                    if run["best"].get("precision") == "int8" and long.moved:  # judged as the search scored it
                        int8_target = replace(precision_target(target, "int8"), train_config=config)
                        long = int8_quality(spec, long, search.data, int8_target, search.store.shared_engine)[0]
                    gains["winner"] = long.psnr_gain_db
                if ref in refs:
                    gains["reference"] = search.train_cache.train(refs[ref], search.data, config, target.backend,
                                                                  target.device)[0].psnr_gain_db
                elif ref is not None:  # bicubic or bilinear: nothing to train
                    gains["reference"] = references[ref]["per_seed"][str(run["seed"])]["psnr_gain_db"]
                out.append({"budget_ms": table["budget_ms"], "seed": run["seed"], "reference": ref,
                            "winner_long_gain_db": gains["winner"], "reference_long_gain_db": gains["reference"]})
        return out

    # ------------------------------------------------------------------ outputs
    def _write(self, result: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        blob = json.dumps(finite(result), indent=1, allow_nan=False) + "\n"
        for name, text in (("bench.json", blob), ("bench.md", render_md(result))):
            tmp = self.out / f"{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.out / name)
