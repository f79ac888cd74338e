"""Optuna study driver: sample -> latency gate -> short train -> record.

One objective (maximize validation PSNR gain over bicubic, dB) under one constraint (latency minus
budget <= 0, reported with ``trial.set_constraint``). A candidate over the budget is told PRUNED
right after its measurement: it is never trained; TPE ranks it as infeasible by how far it missed
(tests/test_search_gate.py), and the default evolution sampler shrinks the nets it derives from it
(nas/samplers.py). Latency comes from the latency database first; training
results come from a training cache keyed by arch_id + training-config hash + data fingerprint.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import signal
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nas import __version__
from nas.errors import NasError, UsageError
from nas.storage import ask, heartbeat, mask_url, open_optuna_storage, retried_trial_numbers

BUDGET_STATS = ("median", "p90")
SAMPLERS = ("evolution", "tpe", "random")   # random: the blind-search control of `nas bench`
DEFAULT_SAMPLER = "evolution"   # budget-aware regularized evolution (nas/samplers.py; reports/bench.md)
CPU_INPUT_SIZE = (135, 240)   # a 270x480 output at x2: what a 2-core CPU can do in a few ms
GPU_INPUT_SIZE = (540, 960)   # a 1080p output at x2: render low, display high
DEFAULT_TRIALS = 50  # at 4 ms on 2 CPU cores: 2-3 minutes (reports/search_default.md)
TRIALS_CSV_COLUMNS = (
    "number", "state", "arch_id", "reference", "summary", "latency_ms", "latency_p90_ms", "latency_cov",
    "roofline_ms", "over_budget", "trained", "psnr_db", "bicubic_psnr_db", "psnr_gain_db", "ssim",
    "shift_consistency_db", "temporal_psnr_db", "measure_s", "train_s", "latency_cached", "train_cached", "macs", "params", "bytes_moved", "error",
)


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search run depends on, resolved from flags (and defaults)."""

    budget_ms: float
    task: str = "sr2x"
    backend: str = "auto"
    input_size: tuple[int, int] | None = None   # None: chosen by the backend (GPU vs CPU default)
    trials: int = DEFAULT_TRIALS
    train_steps: int | None = None              # None: TrainConfig's default
    seed: int = 0
    sampler: str = DEFAULT_SAMPLER              # one of SAMPLERS
    run_dir: str | None = None                  # None: runs/<study>
    storage: str | None = None                  # None: a journal file in the run dir
    study: str | None = None                    # None: derived from task, backend, size and budget
    latency_db: str | None = None               # None: NAS_LATENCY_DB or the user cache dir
    data: str | None = None
    val_data: str | None = None
    loss: str = "l1"
    noise_sigma: float = 25.0                   # denoise only, on the 0-255 scale
    degradation: str = "bicubic"                # how unpaired frames become inputs (nas.data.DEGRADATIONS)
    jpeg_quality: int = 90                      # --degradation video
    val_sequence: bool = False                  # the validation frames are a clip: flicker is measured
    min_shift_consistency: float | None = None  # dB; a trained candidate below it is not eligible
    budget_stat: str = "median"
    warm_start: bool = True
    write_report: bool = True
    write_export: bool = True

    def validate(self) -> None:
        """Reject bad values with one line naming the flag (raised before anything is written)."""
        if not isinstance(self.budget_ms, (int, float)) or not math.isfinite(self.budget_ms) or self.budget_ms <= 0:
            raise UsageError(f"--budget-ms must be a positive number of milliseconds, got {self.budget_ms}")
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        if self.train_steps is not None and self.train_steps < 1:
            raise UsageError(f"--train-steps must be at least 1, got {self.train_steps}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.budget_stat not in BUDGET_STATS:
            raise UsageError(f"--budget-stat must be one of {', '.join(BUDGET_STATS)}, got {self.budget_stat!r}")
        if not math.isfinite(self.noise_sigma) or self.noise_sigma < 0:
            raise UsageError(f"--noise-sigma must be a non-negative number, got {self.noise_sigma}")
        if self.min_shift_consistency is not None and not math.isfinite(self.min_shift_consistency):
            raise UsageError(f"--min-shift-consistency must be a finite number of dB, got {self.min_shift_consistency}")
        from nas.data import degradation_tag

        degradation_tag(self.degradation, self.jpeg_quality)  # a one-line UsageError for a bad name or quality


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
            f"best {best} | hits lat {tally.latency_hits} train {tally.train_hits} | "
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


def parse_input_size(text: str) -> tuple[int, int]:
    """'135x240' -> (135, 240); anything else is a usage error that shows the expected form."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"--input-size must look like HxW (e.g. 135x240), got {text!r}")
    h, w = (int(p) for p in parts)
    if h < 8 or w < 8 or h > 8192 or w > 8192:
        raise UsageError(f"--input-size {h}x{w} is out of range: each side must be 8..8192")
    return h, w


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


def latency_gate(study: Any, trial: Any, latency_ms: float, budget_ms: float) -> bool:
    """Report the constraint; over budget, tell the trial PRUNED at once and return False.

    A PRUNED trial with a positive constraint is infeasible for TPE, which ranks it after every
    feasible trial by how far it missed (tests/test_search_gate.py checks that it learns from it).
    """
    from optuna.trial import TrialState

    trial.set_constraint("latency_ms", latency_ms - budget_ms)
    if latency_ms > budget_ms:
        study.tell(trial, state=TrialState.PRUNED)
        return False
    return True


def _default_study_name(config: SearchConfig, backend: str, size: tuple[int, int]) -> str:
    budget = f"{config.budget_ms:g}".replace(".", "p")
    # another sampler (the random control) gets a study and run dir of its own
    sampler = "" if config.sampler == DEFAULT_SAMPLER else f"-{config.sampler}"
    from nas.data import DEFAULT_DEGRADATION, degradation_tag  # another degradation: a study of its own

    tag = degradation_tag(config.degradation, config.jpeg_quality)
    degradation = "" if tag == DEFAULT_DEGRADATION else f"-{tag}"
    return (f"{config.task}{degradation}-{backend}-{size[0]}x{size[1]}-{config.budget_stat}{budget}ms-"
            f"seed{config.seed}{sampler}")


def _finite(value: float | None) -> float | None:
    """None for a missing or non-finite number (NaN: not measured), so that run.json and --json stay strict JSON."""
    return value if value is not None and math.isfinite(value) else None


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return "" if value is None else value


class Search:
    """One search run in one run dir; ``run()`` returns the summary or raises NoFeasibleError."""

    def __init__(self, config: SearchConfig, quiet: bool = False) -> None:
        config.validate()
        self.config = config
        self.quiet = quiet

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"nas search: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        import optuna

        from latency_db import BackendError, StoreError, Workload, open_store, resolve_backend
        from nas.data import load_data
        from nas.train import TrainConfig
        from nas.train_cache import TrainCache
        from search_spaces import get_space

        cfg = self.config
        self.space = get_space(cfg.task)
        try:
            self.backend = resolve_backend(cfg.backend)
        except BackendError as exc:
            raise UsageError(f"--backend: {exc}") from None
        size = cfg.input_size or (GPU_INPUT_SIZE if self.backend.is_gpu else CPU_INPUT_SIZE)
        self.input_size = size
        self.workload = Workload(height=size[0], width=size[1], scale=self.space.scale,
                                 io_dtype=self.backend.default_io_dtype)
        self.study_name = cfg.study or _default_study_name(cfg, self.backend.name, size)
        self.run_dir = Path(cfg.run_dir or Path("runs") / self.study_name)
        train_kwargs: dict[str, Any] = {"loss": cfg.loss, "seed": cfg.seed}
        if cfg.train_steps is not None:
            train_kwargs["steps"] = cfg.train_steps
        if self.space.data_kind == "denoise":
            train_kwargs["noise_sigma"] = cfg.noise_sigma
        self.train_config = TrainConfig(**train_kwargs)
        self.device = "cuda" if self.backend.is_gpu else "cpu"
        self.fingerprint = self.backend.fingerprint()
        self._check_run_dir()
        self.data = load_data(self.space.data_kind, self.space.scale, self.train_config.patch_size,
                              cfg.data, cfg.val_data, degradation=cfg.degradation, jpeg_quality=cfg.jpeg_quality,
                              val_sequence=cfg.val_sequence)
        remote = cfg.storage is not None and "://" in cfg.storage  # before the latency DB: a bad URL writes nothing
        storage = open_optuna_storage(cfg.storage, self.run_dir / "study.journal") if remote else None
        try:
            self.store = open_store(cfg.latency_db)
        except StoreError as exc:
            raise UsageError(f"--latency-db: {exc}") from None
        self.train_cache = TrainCache(self.store.url)
        self._make_run_dir()  # only now: every check above writes nothing
        # said after the checks, so that a refused run prints its error line alone
        self.say(f"backend {self.backend.name} on {self.fingerprint['device']}; input {size[0]}x{size[1]} "
                 f"({self.space.name}: output {size[0] * self.space.scale}x{size[1] * self.space.scale}); "
                 f"budget {cfg.budget_ms:g} ms ({cfg.budget_stat})")
        if storage is None:
            storage = open_optuna_storage(cfg.storage, self.run_dir / "study.journal")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            study_name=self.study_name, storage=storage, direction="maximize", load_if_exists=True,
            sampler=self._sampler(),
        )
        self._check_study_settings()
        self._write_run_json(None)

    def _sampler(self) -> Any:
        import optuna

        from nas.samplers import EvolutionSampler

        seed = self._sampler_seed()
        if self.config.sampler == "evolution":
            return EvolutionSampler(budget=self.config.budget_ms, seed=seed)
        if self.config.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def _sampler_seed(self) -> int:
        """--seed alone for a study of its own; mixed with the run dir when --storage shares the study, so
        that workers started with the same command do not all sample the same candidates."""
        if self.config.storage is None:
            return self.config.seed
        return (self.config.seed + zlib.crc32(str(self.run_dir.resolve()).encode())) % 2**32

    def _identity(self) -> dict[str, Any]:
        """What a study's trials depend on: mixing runs that differ here would mix incomparable numbers.
        The degradation and the stability floor appear only when set, so that earlier studies resume."""
        identity = {"task": self.space.name, "space_version": self.space.version, "backend": self.backend.name,
                    "input_size": list(self.input_size), "budget_ms": self.config.budget_ms,
                    "budget_stat": self.config.budget_stat, "train_config": self.train_config.hash(),
                    "data": self.data.data_id}
        if self.data.degradation != "bicubic":
            identity["degradation"] = self.data.degradation
        if self.config.min_shift_consistency is not None:
            identity["min_shift_consistency"] = self.config.min_shift_consistency
        return identity

    def _check_run_dir(self) -> None:
        run_json = self.run_dir / "run.json"
        if run_json.exists():
            try:
                previous = json.loads(run_json.read_text())
                study = previous["study"]
            except (OSError, ValueError, KeyError, TypeError):
                raise UsageError(f"run dir {self.run_dir} holds a run.json this nas cannot read: "
                                 "choose another --run-dir") from None
            if study != self.study_name:
                raise UsageError(f"run dir {self.run_dir} already holds study '{study}', not "
                                 f"'{self.study_name}': choose another --run-dir (nothing was overwritten)")
        elif self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise UsageError(f"run dir {self.run_dir} exists and is not a nas run dir: choose another --run-dir")
        parent = next((p for p in (self.run_dir, *self.run_dir.parents) if p.exists()), Path("."))
        if not os.access(parent, os.W_OK):
            raise UsageError(f"cannot write run dir {self.run_dir}: {parent} is not writable")

    def _make_run_dir(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "archs").mkdir(exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot write run dir {self.run_dir}: {exc.strerror or exc}") from None

    def _check_study_settings(self) -> None:
        identity = self._identity()
        stored = self.study.user_attrs.get("identity")
        if stored is None:
            self.study.set_user_attr("identity", identity)
            if self.config.warm_start and not self.study.trials:
                for name, spec in self.space.references().items():
                    self.study.enqueue_trial(self.space.params_of(spec), user_attrs={"reference": name},
                                             skip_if_exists=True)
        elif stored != identity:
            changed = sorted(k for k in identity if stored.get(k) != identity[k])
            raise UsageError(f"study '{self.study_name}' was created with other settings ({', '.join(changed)} "
                             "differ): use another --study name or the same settings")

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

        cfg = self.config
        spec = self.space.sample(trial, self.input_size)
        arch_id = spec.arch_id
        counts = count(spec, *self.input_size, bytes_per_element=self.workload.bytes_per_element)
        trial.set_user_attr("arch_id", arch_id)
        trial.set_user_attr("spec", spec.canonical_json())
        trial.set_user_attr("summary", spec.summary())
        trial.set_user_attr("counts", {"macs": counts.macs, "params": counts.params,
                                       "bytes_moved": counts.bytes_moved})
        folder = self.run_dir / "archs" / arch_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "arch.json").write_text(spec.to_json() + "\n")

        latency = measure_or_get(spec, self.workload, self.backend, self.store)  # takes the device lock
        tally.lock_wait_s += latency.lock_wait_s
        tally.measure_s += latency.measure_s - latency.lock_wait_s
        tally.latency_hits += int(latency.cached)
        self._note_contention(latency, trial.number, tally)
        (folder / "latency.json").write_text(json.dumps(latency.to_dict(), indent=1) + "\n")
        trial.set_user_attr("latency", {
            "median_ms": latency.median_ms, "p90_ms": latency.p90_ms, "cov": latency.cov,
            "roofline_ms": latency.roofline_ms, "cached": latency.cached, "measure_s": latency.measure_s,
            "unstable": latency.unstable,
        })
        if latency.error is not None:
            trial.set_user_attr("error", f"measurement failed: {latency.error}")
            self.study.tell(trial, state=TrialState.FAIL)
            return
        value = latency.median_ms if cfg.budget_stat == "median" else latency.p90_ms
        if not latency_gate(self.study, trial, value, cfg.budget_ms):
            return

        result, cached, waited_s = self.train_cache.train(spec, self.data, self.train_config, self.backend,
                                                          self.device)
        trial.set_user_attr("train_cached", cached)
        tally.lock_wait_s += waited_s
        if cached:
            tally.train_hits += 1
        else:
            tally.train_s += result.train_s
        self._write_training(folder, result)
        trial.set_user_attr("train", {
            "psnr_db": result.psnr_db, "bicubic_psnr_db": result.bicubic_psnr_db, "ssim": result.ssim,
            "psnr_gain_db": result.psnr_gain_db, "train_s": 0.0 if trial.user_attrs["train_cached"]
            else result.train_s, "moved": result.moved, "shift_consistency_db": result.shift_consistency_db,
            "temporal_psnr_db": result.temporal_psnr_db,
        })
        if not result.moved or not math.isfinite(result.psnr_gain_db):
            trial.set_user_attr("error", "training failed: the network did not move from its classical "
                                         "baseline (dead ReLUs?); not a verdict on the architecture")
            self.study.tell(trial, state=TrialState.FAIL)
            return
        floor = cfg.min_shift_consistency
        if floor is not None and not result.shift_consistency_db >= floor:  # NaN (nothing measured) fails too
            trial.set_user_attr("error", f"shift consistency {result.shift_consistency_db:.2f} dB is below "
                                         f"--min-shift-consistency {floor:g} dB: trained, but not eligible")
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        self.study.tell(trial, result.psnr_gain_db)
        if tally.best_gain is None or result.psnr_gain_db > tally.best_gain:
            tally.best_gain, tally.best_latency = result.psnr_gain_db, value

    def _write_training(self, folder: Path, result: Any) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in result.state_dict.items()}, str(folder / "weights.safetensors"))
        info = {k: v for k, v in result.to_dict().items() if k != "state_dict"}
        info |= {"train_config": self.train_config.to_dict(), "train_config_hash": self.train_config.hash()}
        (folder / "train.json").write_text(json.dumps(info, indent=1) + "\n")

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        from optuna.trial import TrialState

        self._setup()
        cfg = self.config
        tally = Tally()
        mine = self._my_trials()
        self.say(f"study '{self.study_name}' in {self.run_dir}: {len(mine)} of {cfg.trials} trials done")
        progress = Progress(cfg.trials, self.quiet)
        stop = StopFlag()
        progress.update(tally, len(mine))
        with stop.installed(self.say):
            while len(mine) < cfg.trials and not stop.requested:
                trial = ask(self.study)  # may be a dead worker's trial, retried here
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
                self._write_trials_csv()
        progress.close()
        return self._finish(tally, interrupted=stop.requested)

    def _my_trials(self) -> list[int]:
        """Finished trials of this run dir; a stale trial that another worker retries does not count."""
        here = str(self.run_dir.resolve())
        trials = self.study.get_trials(deepcopy=False)
        retried = retried_trial_numbers(trials)
        return [t.number for t in trials
                if t.user_attrs.get("run_dir") == here and t.state.is_finished() and t.number not in retried]

    # ------------------------------------------------------------------ outputs
    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.study.get_trials(deepcopy=False):
            if not t.state.is_finished():
                continue
            lat = t.user_attrs.get("latency", {})
            tr = t.user_attrs.get("train", {})
            counts = t.user_attrs.get("counts", {})
            median = lat.get("median_ms")
            value = median if self.config.budget_stat == "median" else lat.get("p90_ms")
            rows.append({
                "number": t.number, "state": t.state.name, "arch_id": t.user_attrs.get("arch_id", ""),
                "reference": t.user_attrs.get("reference", ""), "summary": t.user_attrs.get("summary", ""),
                "latency_ms": median, "latency_p90_ms": lat.get("p90_ms"), "latency_cov": lat.get("cov"),
                "roofline_ms": lat.get("roofline_ms"),
                "over_budget": value is not None and value > self.config.budget_ms,
                "trained": bool(tr), "psnr_db": tr.get("psnr_db"), "bicubic_psnr_db": tr.get("bicubic_psnr_db"),
                "psnr_gain_db": tr.get("psnr_gain_db"), "ssim": tr.get("ssim"),
                "shift_consistency_db": tr.get("shift_consistency_db"), "temporal_psnr_db": tr.get("temporal_psnr_db"),
                "measure_s": lat.get("measure_s"), "train_s": tr.get("train_s", 0.0 if lat else None),
                "latency_cached": lat.get("cached"), "train_cached": t.user_attrs.get("train_cached", False),
                "macs": counts.get("macs"), "params": counts.get("params"),
                "bytes_moved": counts.get("bytes_moved"), "error": t.user_attrs.get("error", ""),
            })
        return rows

    def _write_trials_csv(self) -> list[dict[str, Any]]:
        rows = self._rows()
        tmp = self.run_dir / "trials.csv.tmp"
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=TRIALS_CSV_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _fmt(v) for k, v in row.items()})
        tmp.replace(self.run_dir / "trials.csv")
        return rows

    def _summary(self, rows: list[dict[str, Any]], tally: Tally) -> dict[str, Any]:
        feasible = [r for r in rows if r["state"] == "COMPLETE"]
        best = max(feasible, key=lambda r: r["psnr_gain_db"]) if feasible else None
        return {
            "n_trials": len(rows),
            "n_trained": sum(1 for r in rows if r["trained"]),
            "n_over_budget": sum(1 for r in rows if r["over_budget"]),
            "n_failed": sum(1 for r in rows if r["state"] == "FAIL"),
            "n_latency_cache_hits": sum(1 for r in rows if r["latency_cached"]),
            "n_train_cache_hits": sum(1 for r in rows if r["train_cached"]),
            "this_run": {"trials": tally.n_done, "latency_cache_hits": tally.latency_hits,
                         "train_cache_hits": tally.train_hits, "contended_measurements": tally.contended},
            "measure_s": round(tally.measure_s, 3), "train_s": round(tally.train_s, 3),
            "lock_wait_s": round(tally.lock_wait_s, 3), "wall_s": round(time.perf_counter() - tally.started, 3),
            "best": None if best is None else {
                "trial": best["number"], "arch_id": best["arch_id"], "summary": best["summary"],
                "reference": best["reference"], "latency_ms": best["latency_ms"],
                "latency_p90_ms": best["latency_p90_ms"], "psnr_gain_db": best["psnr_gain_db"],
                "shift_consistency_db": _finite(best["shift_consistency_db"]),
                "temporal_psnr_db": _finite(best["temporal_psnr_db"]),
            },
        }

    def _finish(self, tally: Tally, interrupted: bool) -> dict[str, Any]:
        self.interrupted = interrupted
        rows = self._write_trials_csv()
        summary = self._summary(rows, tally)
        self._write_run_json(summary, interrupted)
        if summary["best"] is not None and not interrupted:
            self._outputs()
        self.summary = summary
        return summary

    def _write_run_json(self, summary: dict[str, Any] | None, interrupted: bool = False) -> None:
        """run.json: written when the run starts (summary null) and again when it ends."""
        cfg = self.config
        config = asdict(replace(cfg, storage=mask_url(cfg.storage), latency_db=mask_url(cfg.latency_db)))
        config |= {"input_size": list(self.input_size), "run_dir": str(self.run_dir), "study": self.study_name}
        run = {
            "nas_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv, "study": self.study_name, "config": config,
            "train_config": self.train_config.to_dict(), "versions": versions(),
            "backend": self.backend.name, "device": self.fingerprint, "workload": self.workload.to_dict(),
            "references": {n: s.arch_id for n, s in self.space.references().items()},
            "data": self.data.describe(), "interrupted": interrupted, "summary": summary,
        }
        tmp = self.run_dir / "run.json.tmp"
        tmp.write_text(json.dumps(run, indent=2) + "\n")
        tmp.replace(self.run_dir / "run.json")

    def _outputs(self) -> None:
        """The report and the export of the winner, each from the run dir alone."""
        if self.config.write_report:
            from nas.report import write_report

            path = write_report(self.run_dir)
            self.say(f"report: {path}")
        if self.config.write_export:
            import shutil

            from nas.export import export_run

            best = self.run_dir / "best"
            if best.exists():
                shutil.rmtree(best)  # the run's own previous export: always regenerated from the run dir
            export_run(self.run_dir, best)
            self.say(f"winner exported to {best}")

    def no_feasible_message(self) -> str:
        rows = self._rows()
        floor = self.config.min_shift_consistency
        steady = [r for r in rows if r["trained"] and r["shift_consistency_db"] is not None
                  and math.isfinite(r["shift_consistency_db"])]
        if floor is not None and steady:
            top = max(steady, key=lambda r: r["shift_consistency_db"])
            return (f"no trained candidate reaches --min-shift-consistency {floor:g} dB: the steadiest scored "
                    f"{top['shift_consistency_db']:.1f} dB (trial {top['number']}); lower the floor or search longer")
        measured = [r for r in rows if r["latency_ms"] is not None]
        if not measured:
            return "no candidate could be measured; see the error column of trials.csv"
        stat = "latency_ms" if self.config.budget_stat == "median" else "latency_p90_ms"
        fastest = min(measured, key=lambda r: r[stat])
        need = math.ceil(fastest[stat] * 100) / 100
        return (f"no architecture meets the {self.config.budget_ms:g} ms budget: the fastest candidate "
                f"measured {fastest[stat]:.3f} ms ({self.config.budget_stat}, trial {fastest['number']}); "
                f"--budget-ms {need:g} would admit it")


def run_search(config: SearchConfig, quiet: bool = False) -> tuple[Search, dict[str, Any]]:
    """Run a search; ``summary['best']`` is None when no candidate met the budget (see
    ``Search.no_feasible_message``)."""
    search = Search(config, quiet=quiet)
    return search, search.run()
