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
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError
from nas.rundir import RunDir
from nas.search import DEFAULT_SAMPLER, DEFAULT_TRIALS, SAMPLERS, Search, SearchConfig
from nas.storage import mask_url
from nas.target import Budget, Target

if TYPE_CHECKING:
    from torch import nn

    from nas.data import TaskData
    from nas.train import TrainConfig, TrainResult
    from search_spaces import Counts

DEFAULT_BUDGETS = (2.0, 4.0, 8.0)
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_SAMPLERS = (DEFAULT_SAMPLER, "random")   # the search, then its blind-search control
LONG_FACTOR = 4          # default --long-steps: this many times the short training's steps
CLASSICAL = ("bicubic", "bilinear")
SR_TASKS = ("sr2x", "sr3x", "sr4x")
# MACs per output value of a separable resize: 4x4 taps for bicubic, 2x2 for bilinear
RESIZE_TAPS = {"bicubic": 16, "bilinear": 4}


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench depends on, resolved from flags (None: the search's own default)."""

    budgets: tuple[float, ...] = DEFAULT_BUDGETS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    samplers: tuple[str, ...] = DEFAULT_SAMPLERS   # the first is the search judged against the targets
    trials: int = DEFAULT_TRIALS
    train_steps: int | None = None     # None: TrainConfig's default
    long_steps: int | None = None      # None: LONG_FACTOR x the short steps
    task: str = "sr2x"
    backend: str = "auto"
    input_size: tuple[int, int] | None = None
    out: str = "bench"
    latency_db: str | None = None

    def validate(self) -> None:
        """Reject bad values with one line naming the flag, before anything is written."""
        if not self.budgets or any(not math.isfinite(b) or b <= 0 for b in self.budgets):
            raise UsageError(f"--budgets must be positive milliseconds, got {list(self.budgets)}")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise UsageError(f"--seeds must be non-negative integers, got {list(self.seeds)}")
        unknown = [s for s in self.samplers if s not in SAMPLERS]
        if unknown or len(set(self.samplers)) != len(self.samplers) or "random" not in self.samplers[1:]:
            raise UsageError(f"--samplers must list distinct samplers of {', '.join(SAMPLERS.names())}, the search first "
                             f"and random among the others (the control), got {','.join(self.samplers)}")
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        for flag, steps in (("--train-steps", self.train_steps), ("--long-steps", self.long_steps)):
            if steps is not None and steps < 1:
                raise UsageError(f"{flag} must be at least 1, got {steps}")
        if self.task not in SR_TASKS:
            raise UsageError(f"--task must be one of {', '.join(SR_TASKS)} (the bench compares against "
                             f"bicubic and bilinear upsampling), got {self.task!r}")


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


def parse_budgets(text: str) -> tuple[float, ...]:
    """'2,4,8' -> (2.0, 4.0, 8.0): positive, finite, distinct milliseconds."""
    try:
        values = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"must be comma-separated milliseconds like 2,4,8, got {text!r}") from None
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"must be positive, finite milliseconds, got {text!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"lists a budget twice: {text!r}")
    return values


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2): distinct non-negative integers."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise ValueError(f"must be comma-separated non-negative integers like 0,1,2, got {text!r}")
    values = tuple(int(p) for p in parts)
    if len(set(values)) != len(values):
        raise ValueError(f"lists a seed twice: {text!r}")
    return values


def parse_samplers(text: str) -> tuple[str, ...]:
    """'evolution,tpe,random' -> ('evolution', 'tpe', 'random'); BenchConfig.validate checks the names."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman rank correlation (ties get their average rank); None for fewer than 3 pairs or a constant side."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), min, max and n of the finite values."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "sd": sd, "min": min(vals), "max": max(vals), "n": len(vals)}


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages from /proc/loadavg (None where there is none)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


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
                                               latency_db=cfg.latency_db)
        return self.targets[key]

    def _search(self, budget: float, sampler: str, seed: int) -> Search | None:
        """One ordinary search and its report; None when it was interrupted (rerunning the bench resumes it)."""
        from nas.report import write_report

        config = SearchConfig(trials=self.config.trials, seed=seed, sampler=sampler,
                              run_dir=str(self.run_dir(budget, sampler, seed)))
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
                "psnr_db": best_row.psnr_db if best_row else None,
            },
        }

    # ------------------------------------------------------------------ the whole bench
    def run(self) -> dict[str, Any]:
        cfg = self.config
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        load_before, t0 = loadavg(), time.perf_counter()
        runs: list[dict[str, Any]] = []
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
            "references": references, "runs": runs,
            "budgets": [self._budget_table(b, runs, references) for b in cfg.budgets],
            "long": long,
        }
        result["targets"] = targets(result)
        self._write(result)
        return result

    def _db_counts(self) -> tuple[int, int]:
        """(latency rows, training-cache rows) in the shared database: the bench's difference is what it
        measured and trained, whatever process did it."""
        import sqlalchemy as sa

        from latency_db import StoreError, open_store
        from nas.train_cache import TrainCache, train_cache

        try:
            store = open_store(self.config.latency_db)
        except StoreError as exc:
            raise UsageError(f"--latency-db: {exc}") from None
        try:
            cache = TrainCache(store.url)
            with cache.engine.connect() as conn:
                trainings = int(conn.execute(sa.select(sa.func.count()).select_from(train_cache)).scalar_one())
            cache.engine.dispose()
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
        for name, spec in target.space.references().items():
            lat = measure_or_get(spec, target.workload, target.backend, search.store)
            per_seed = {}
            for seed in self.config.seeds:
                result, _, _ = search.train_cache.train(spec, search.data, self._config_for(seed), target.backend,
                                                        target.device)
                per_seed[str(seed)] = _train_result(result)
            out[name] = self._reference_entry("net", spec.arch_id, spec.summary(), lat, per_seed)
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
            self.say(f"reference {name}: {_ms(entry['latency_ms'])} ms, gain {_db(entry['gain']['mean'])} dB")
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
        fits = {n: e for n, e in references.items()
                if e["latency_ms"] is not None and e["latency_ms"] <= budget and e["gain"]["mean"] is not None}
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
        for name, spec in target.space.references().items():
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

    # ------------------------------------------------------------------ outputs
    def _write(self, result: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        blob = json.dumps(finite(result), indent=1, allow_nan=False) + "\n"
        for name, text in (("bench.json", blob), ("bench.md", render_md(result))):
            tmp = self.out / f"{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.out / name)


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (a diverged training) replaced by None: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def classical_scores(data: TaskData, scale: int, noise_sigma: float) -> dict[str, dict[str, float]]:
    """Mean validation PSNR and SSIM of plain bicubic and bilinear upsampling, as ``validate`` measures a net."""
    import torch

    from nas.data import val_pairs
    from nas.metrics import psnr, ssim
    from search_spaces.network import ClassicalUpsample

    pairs = val_pairs(data, noise_sigma)
    out = {}
    with torch.no_grad():
        for mode in CLASSICAL:
            up = ClassicalUpsample(scale, mode)
            p = [float(psnr(up(inp).clamp(0, 1), tgt, scale)[0]) for inp, tgt in pairs]
            s = [float(ssim(up(inp).clamp(0, 1), tgt, scale)[0]) for inp, tgt in pairs]
            out[mode] = {"psnr_db": statistics.fmean(p), "ssim": statistics.fmean(s)}
    return out


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's three targets per budget, judged seed by seed (each seed trains every net the same way).

    Winner vs reference: the search's best (the first sampler's) must beat the best fitting reference's
    gain at the same seed, on every seed. Search vs random: mean over seeds of each sampler's best, where a
    seed that found nothing under the budget counts at the best fitting reference's gain (what a user
    would ship instead); per-seed wins, ties and losses beside it. Gate: no over-budget trial of any
    sampler was trained.
    """
    seeds = result["config"]["seeds"]
    searcher = result["config"]["samplers"][0]
    out = []
    for table in result["budgets"]:
        budget, ref = table["budget_ms"], table["best_reference"]
        best = {(r["sampler"], r["seed"]): None if r["best"] is None else r["best"]["psnr_gain_db"]
                for r in result["runs"] if r["budget_ms"] == budget}
        fallback = {k: None if ref is None else
                    result["references"][ref["name"]]["per_seed"][str(k)]["psnr_gain_db"] for k in seeds}
        beating = sum(1 for k in seeds if best[(searcher, k)] is not None
                      and (fallback[k] is None or best[(searcher, k)] > fallback[k]))
        scores = {key: fallback[key[1]] if gain is None else gain for key, gain in best.items()}
        paired = [(scores[(searcher, k)], scores[("random", k)]) for k in seeds]
        paired = [(a, b) for a, b in paired if a is not None and b is not None]
        search_mean = statistics.fmean(a for a, _ in paired) if paired else None
        rnd_mean = statistics.fmean(b for _, b in paired) if paired else None
        mine, rnd, every = table["samplers"][searcher], table["samplers"]["random"], table["samplers"].values()
        out.append({
            "budget_ms": budget, "seeds": len(seeds), "sampler": searcher,
            "winner_beats_reference": beating == len(seeds), "seeds_beating_reference": beating,
            "seeds_found": {name: s["seeds_with_result"] for name, s in table["samplers"].items()},
            "winner_gain_db": mine["gain"]["mean"], "random_gain_db": rnd["gain"]["mean"],
            "reference": None if ref is None else ref["name"],
            "reference_gain_db": None if ref is None else ref["gain"]["mean"],
            "winners_are_references": mine["winners_are_references"],
            "search_beats_random": search_mean is not None and rnd_mean is not None and search_mean > rnd_mean,
            "search_mean_db": search_mean, "random_mean_db": rnd_mean,
            "search_vs_random": {"wins": sum(a > b for a, b in paired), "ties": sum(a == b for a, b in paired),
                                 "losses": sum(a < b for a, b in paired)},
            "gate_ok": all(s["gate_ok"] for s in every),
            "over_budget_trials": sum(s["n_over_budget"] for s in every),
            "over_budget_train_s": sum(s["over_budget_train_s"] for s in every),
        })
    return out


# ---------------------------------------------------------------------- bench.md
def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _db(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def _pm(s: dict[str, Any], fmt: str = "+.3f") -> str:
    if s["mean"] is None:
        return "-"
    return f"{s['mean']:{fmt}} ± {s['sd']:.3f}" + (f" (n={s['n']})" if s["n"] != 1 else "")


def _cell(text: str) -> str:
    """Text for a Markdown table cell: an arch summary's '|' separators would split the cell."""
    return text.replace("|", "\\|")


def _yes(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


def render_md(r: dict[str, Any]) -> str:
    """bench.md: the settings, references, one table per budget, long training and the targets."""
    c = r["config"]
    lines = [
        "# nas bench", "",
        (f"Backend {r['backend']} (protocol {r['protocol']}) on {r['machine']['device']}; input "
        f"{r['input_size'][0]}x{r['input_size'][1]}, task {c['task']}; budgets {', '.join(f'{b:g}' for b in c['budgets'])} ms; "
        f"seeds {', '.join(map(str, c['seeds']))}; {c['trials']} trials per search; short training "
        f"{r['train_config']['steps']} steps, long training {c['long_steps']} steps. Samplers: "
        f"{', '.join(c['samplers'])}; the first is the search, judged against the targets. Every search (the "
        "RandomSampler control alike) enqueues the reference nets as its first trials. Gains are validation "
        "PSNR over plain bicubic on held-out images the search never trains on "
        f"({', '.join(r['data']['val'])}); ± is the sample standard deviation over seeds."), "",
        (f"Wall {r['wall_s']:.0f} s (searches {r['phase_s']['searches']:.0f} s, references outside the searches "
         f"{r['phase_s']['references']:.0f} s, long training {r['phase_s']['long']:.0f} s); load average (1/5/15 min) before {r['machine']['loadavg_before']}, "
        f"after {r['machine']['loadavg_after']}; new latency rows {r['new_latency_rows']}, new trainings "
        f"{r['new_trainings']} (shared database: a candidate is measured once, an (arch, training config) "
        "trained once across the bench)."), "",
        "## References (short training)", "",
        "| reference | latency ms (median) | gain dB | SSIM | arch |", "|---|---|---|---|---|",
    ]
    for name, e in r["references"].items():
        lines.append(f"| {name} | {_ms(e['latency_ms'])} | {_pm(e['gain'])} | {_pm(e['ssim'], '.4f')} | "
                     f"{_cell(e['summary'])} |")
    lines += ["", ("Plain bicubic and bilinear are timed as graphs holding only the Resize (no learned layer; "
              "the search space needs at least one); bicubic's gain is 0 by definition, bilinear's is its "
              "PSNR minus bicubic's on the same images. The reference nets' gains come from the searches' "
              "own short trainings (shared cache); a net no budget admits is trained by the bench itself."), ""]
    for t in r["budgets"]:
        lines += [f"## Budget {t['budget_ms']:g} ms", "",
                  ("| | best gain dB | its latency ms | its SSIM | winner is a reference | trials | over budget "
                  "(trainings avoided) | their train s | measure s | train s | other s |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for sampler, s in t["samplers"].items():
            ts = s["time_s"]
            lines.append(
                f"| {sampler} | {_pm(s['gain'])} | {_pm(s['latency_ms'], '.3f')} | {_pm(s['ssim'], '.4f')} | "
                f"{s['winners_are_references']}/{s['seeds_with_result']} | {s['n_trials']} | {s['n_over_budget']} | "
                f"{s['over_budget_train_s']:g} | {ts['measure']:.0f} | {ts['train']:.0f} | {ts['other']:.0f} |")
        ref = t["best_reference"]
        lines += ["", "Best reference under the budget: " + (
            "none fits" if ref is None else
            f"{ref['name']} at {_ms(ref['latency_ms'])} ms, {_pm(ref['gain'])} dB, SSIM {_pm(ref['ssim'], '.4f')}")
            + f" (fitting: {', '.join(t['references_that_fit']) or 'none'}).", ""]
        per_seed = [x for x in r["runs"] if x["budget_ms"] == t["budget_ms"]]
        lines += ["| sampler | seed | best gain dB | latency ms | SSIM | arch |", "|---|---|---|---|---|---|"]
        for x in per_seed:
            b = x["best"]
            lines.append(f"| {x['sampler']} | {x['seed']} | " + (
                "- | - | - | nothing under the budget |" if b is None else
                f"{_db(b['psnr_gain_db'])} | {_ms(b['latency_ms'])} | {b['ssim']:.4f} | "
                f"{(b['reference'] + ': ') if b['reference'] else ''}{_cell(b['summary'])} |"))
        lines.append("")
    lg = r["long"]
    rho = "not defined (fewer than 3 nets or a constant side)" if lg["spearman"] is None else f"{lg['spearman']:+.3f}"
    lines += [f"## Short ({lg['short_steps']} steps) vs long ({lg['long_steps']} steps) training", "",
              f"Nets: {lg['which']}.", "",
              "| net | seed | short gain dB | long gain dB | long SSIM | arch |", "|---|---|---|---|---|---|"]
    for n in lg["nets"]:
        lines.append(f"| {' = '.join(n['labels'])} | {n['seed']} | {_db(n['short']['psnr_gain_db'])} | "
                     f"{_db(n['long']['psnr_gain_db'])} | {n['long']['ssim']:.4f} | {_cell(n['summary'])} |")
    lines += ["", f"Spearman rank correlation, short vs long gain, over {lg['n_pairs']} nets: {rho}.", "",
              "## Targets", "",
              ("Judged seed by seed: the winner must beat the best fitting reference trained with the same seed on "
              "every seed; for the search against random, a seed where a sampler found nothing under the budget counts at "
              "that reference's gain (the fallback a user would ship)."), "",
              ("| budget ms | winner beats best reference that fits, every seed | search beats random (mean over "
               "seeds) | gate trained no over-budget candidate |"), "|---|---|---|---|"]
    for t in r["targets"]:
        ref = "nothing fits" if t["reference"] is None else f"{t['reference']} {_db(t['reference_gain_db'])}"
        found = t["seeds_found"]
        first = (f"{_yes(t['winner_beats_reference'])}: beats it on {t['seeds_beating_reference']}/{t['seeds']} "
                 f"seeds; {t['sampler']} best {_db(t['winner_gain_db'])} (found on {found[t['sampler']]}/{t['seeds']}) "
                 f"vs {ref}")
        if t["winners_are_references"]:
            first += f"; the winner is that reference on {t['winners_are_references']} seeds"
        wtl = t["search_vs_random"]
        lines.append(
            f"| {t['budget_ms']:g} | {first} | {_yes(t['search_beats_random'])}: {_db(t['search_mean_db'])} vs "
            f"{_db(t['random_mean_db'])} (random found on {found['random']}/{t['seeds']}); per seed {t['sampler']} "
            f"{wtl['wins']} better, {wtl['ties']} tied, {wtl['losses']} worse | {_yes(t['gate_ok'])}: "
            f"{t['over_budget_trials']} over-budget trials, {t['over_budget_train_s']:g} s of training |")
    return "\n".join(lines) + "\n"
