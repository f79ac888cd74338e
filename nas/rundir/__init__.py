"""The run directory (docs/run_dir.md) in code: run.json's schema, one writer, one checked reader.

``Search`` writes a run dir through ``RunDirWriter`` (run.json assembled by ``run_meta`` and ``run_json``
here, trials.csv rows by nas/rundir/trials.py); ``nas report``, ``nas export`` and ``nas bench`` read
it through ``RunDir.load``, which checks everything once (a run dir is user input: it may be edited,
truncated or hostile), so the readers work on typed values. ``best_trial`` is the one winner rule.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError
from nas.rundir.trials import (
    REQUIRED_COLUMNS,
    TARGET_PREFIX,
    TRIALS_CSV_COLUMNS,
    TrialRow,
    as_dict,
    best_trial,
    by_gain,
    cell,
    integer,
    number,
    parse_row,
    summarize,
    target_columns,
    trial_row,
)
from nas.target import Budget
from search_spaces.spec import is_arch_id

if TYPE_CHECKING:
    import torch

    from nas.search.config import SearchConfig
    from nas.target import Target
    from search_spaces import ArchSpec

RUN_JSON, TRIALS_CSV, ARCHS = "run.json", "trials.csv", "archs"
TRAIN_FILES = ("weights.safetensors", "train.json")              # a trained candidate's weights and record
FINAL_FILES = ("final_weights.safetensors", "final.json")        # a finalist's longer training's

__all__ = [  # the run dir's contract: run.json here, trials.csv rows in nas/rundir/trials.py
    "ARCHS", "FINAL_FILES", "REQUIRED_COLUMNS", "RUN_JSON", "TARGET_PREFIX", "TRAIN_FILES", "TRIALS_CSV",
    "TRIALS_CSV_COLUMNS", "RunDir", "RunDirWriter", "TrialRow", "add_baselines",
    "as_dict", "best_trial", "by_gain", "integer", "number", "read_json_object", "run_json", "run_meta", "summarize",
    "target_columns", "trial_row", "versions",
]


# ---------------------------------------------------------------------- run.json
def versions() -> dict[str, str | None]:
    """Exact versions of what shapes the numbers (stored in run.json)."""
    from importlib import metadata

    from nas import __version__

    out: dict[str, str | None] = {"nas": __version__, "python": platform.python_version()}
    for dist in ("torch", "optuna", "onnx", "onnxruntime", "tensorrt", "numpy", "scikit-image"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def run_meta(target: Target, config: SearchConfig, study: str, rungs: tuple[int, ...], latency_db_shown: str | None,
             storage_shown: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """run.json's settings: what every worker of a study shares (published on the study). URLs come masked."""
    from nas import __version__

    t = target
    settings = {
        "task": t.space.name, "budget_ms": t.budget.limit_ms, "budget_stat": t.budget.stat,
        "backend": t.backend.name, "input_size": list(t.input_size), "trials": config.trials,
        "train_steps": t.train_config.steps, "seed": config.seed, "sampler": config.sampler,
        "storage": storage_shown, "study": study, "latency_db": latency_db_shown, "data": t.data,
        "val_data": t.val_data, "loss": t.train_config.loss, "noise_sigma": t.train_config.noise_sigma,
        "warm_start": config.warm_start, "degradation": t.degradation, "jpeg_quality": t.jpeg_quality,
        "val_sequence": t.val_sequence, "min_shift_consistency": t.min_shift_consistency,
        "predictor": config.predictor, "pruner": config.pruner, "rungs": list(rungs), "timeout_s": config.timeout_s,
        "precision": list(t.precisions) or [t.backend.default_io_dtype],
        "finalists": config.finalists, "final_steps": config.final_steps_for(t.train_config.steps),
    }
    return {
        "nas_version": __version__, "study": study, "config": settings,
        "train_config": t.train_config.to_dict(), "versions": versions(),
        "backend": t.backend.name, "device": t.fingerprint, "workload": t.workload.to_dict(),
        "references": {n: s.arch_id for n, s in t.space.fitting_references(t.input_size)[0].items()},
        "data": data,
    }


def run_json(meta: Mapping[str, Any], run_dir: Path, summary: dict[str, Any] | None,
             interrupted: bool = False) -> dict[str, Any]:
    """The whole run.json of one run dir: the study's settings, this run dir, when, and the summary
    (None while the run is going on)."""
    config = as_dict(meta.get("config"))
    return {**meta, "config": {**config, "run_dir": str(run_dir)},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
            "interrupted": interrupted, "summary": summary}


# ---------------------------------------------------------------------- writing
def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class RunDirWriter:
    """Writes one run dir: checked before anything is created, every file replaced atomically."""

    def __init__(self, path: Path, targets: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.targets = targets   # --target names: trials.csv gets their columns (nas/rundir/trials.py)

    def check(self, study: str) -> None:
        """Refuse a folder that holds another study's run or something that is not a run dir."""
        run_json = self.path / RUN_JSON
        if run_json.exists():
            try:
                previous = json.loads(run_json.read_text())
                other = previous["study"]
            except (OSError, ValueError, KeyError, TypeError):
                raise UsageError(f"run dir {self.path} holds a run.json this nas cannot read: "
                                 "choose another --run-dir") from None
            if other != study:
                raise UsageError(f"run dir {self.path} already holds study '{other}', not "
                                 f"'{study}': choose another --run-dir (nothing was overwritten)")
        elif self.path.exists() and any(self.path.iterdir()) and not self._started_only():
            raise UsageError(f"run dir {self.path} exists and is not a nas run dir: choose another --run-dir")
        parent = next((p for p in (self.path, *self.path.parents) if p.exists()), Path("."))
        if not os.access(parent, os.W_OK):
            raise UsageError(f"cannot write run dir {self.path}: {parent} is not writable")

    def _started_only(self) -> bool:
        """What a search leaves when it is killed after creating the run dir and before its first run.json:
        an empty archs/ and perhaps its journal. Rerunning the command resumes there."""
        names = {p.name for p in self.path.iterdir()}
        archs = self.path / ARCHS
        return (names <= {ARCHS, "study.journal", f"{RUN_JSON}.tmp"} and archs.is_dir()
                and not any(archs.iterdir()))

    def create(self) -> None:
        try:
            (self.path / ARCHS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot write run dir {self.path}: {exc.strerror or exc}") from None

    def arch_dir(self, arch_id: str, precision: str = "") -> Path:
        """archs/<arch_id>/, or archs/<arch_id>/<precision>/ for a precision given by --precision: the rows of one
        net in two precisions never overwrite each other."""
        folder = self.path / ARCHS / arch_id / precision if precision else self.path / ARCHS / arch_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write_arch(self, spec: ArchSpec) -> None:
        _atomic_write(self.arch_dir(spec.arch_id) / "arch.json", spec.to_json() + "\n")

    def write_latency(self, arch_id: str, latency: Mapping[str, Any], precision: str = "") -> None:
        _atomic_write(self.arch_dir(arch_id, precision) / "latency.json", json.dumps(dict(latency), indent=1) + "\n")

    def write_int8(self, arch_id: str, int8: Any) -> None:
        """An int8 trial's QDQ graph (model_int8.onnx) and its figures (int8.json) beside its weights."""
        folder = self.arch_dir(arch_id, "int8")
        tmp = folder / "model_int8.onnx.tmp"
        tmp.write_bytes(int8.graph)
        tmp.replace(folder / "model_int8.onnx")
        _atomic_write(folder / "int8.json", json.dumps(int8.to_dict(), indent=1) + "\n")

    def write_training(self, arch_id: str, result: Any, train_config: Mapping[str, Any], config_hash: str,
                       precision: str = "", final: bool = False) -> None:
        """weights.safetensors and train.json of a trained candidate (a TrainResult, the TrainConfig as a
        dict and its hash: the training-cache key); ``final``: a finalist's longer training, as
        final_weights.safetensors and final.json beside them."""
        from safetensors.torch import save_file

        folder = self.arch_dir(arch_id, precision)
        weights, record = FINAL_FILES if final else TRAIN_FILES
        tmp = folder / f"{weights}.tmp"
        save_file({k: v.contiguous() for k, v in result.state_dict.items()}, str(tmp))
        tmp.replace(folder / weights)
        info = {k: v for k, v in result.to_dict().items() if k != "state_dict"}
        info |= {"train_config": dict(train_config), "train_config_hash": config_hash}
        _atomic_write(folder / record, json.dumps(info, indent=1) + "\n")

    def write_trials(self, rows: Iterable[TrialRow]) -> None:
        tmp = self.path / f"{TRIALS_CSV}.tmp"
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=TRIALS_CSV_COLUMNS + target_columns(self.targets))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: cell(v) for k, v in row.flat(self.targets).items()})
        tmp.replace(self.path / TRIALS_CSV)

    def write_run_json(self, run: Mapping[str, Any]) -> None:
        _atomic_write(self.path / RUN_JSON, json.dumps(dict(run), indent=2) + "\n")


def add_baselines(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """run.json's ``baselines`` (``--baseline``: the user's own graphs, docs/run_dir.md), a record of the same
    name replaced."""
    path = Path(run_dir) / RUN_JSON
    meta = read_json_object(path)
    names = {r["name"] for r in records}
    kept = [b for b in meta.get("baselines") or [] if isinstance(b, dict) and b.get("name") not in names]
    _atomic_write(path, json.dumps({**meta, "baselines": kept + records}, indent=2) + "\n")


# ---------------------------------------------------------------------- reading
def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a file; anything else is a one-line UsageError naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object")
    return data


@dataclass
class RunDir:
    """A run dir as read: run.json, the typed trials, and the per-arch files on demand (checked)."""

    path: Path
    meta: dict[str, Any]
    trials: list[TrialRow]
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> RunDir:
        """Read and check run.json and trials.csv; a missing or malformed one raises UsageError."""
        path = Path(path)
        if not path.is_dir():
            raise UsageError(f"run dir {path} does not exist: not a run dir (give the --run-dir of a finished "
                             "nas search)")
        for name in (RUN_JSON, TRIALS_CSV):
            if not (path / name).is_file():
                raise UsageError(f"{path} is not a run dir: {name} is missing")
        meta = read_json_object(path / RUN_JSON)
        csv_path = path / TRIALS_CSV
        try:
            with open(csv_path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                columns = reader.fieldnames or []
                raw_rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UsageError(f"{csv_path} is not a readable CSV file: {exc}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise UsageError(f"{csv_path} lacks the column(s) {', '.join(missing)} (see docs/run_dir.md)")
        trials = sorted((parse_row(r, i + 2, csv_path) for i, r in enumerate(raw_rows)), key=lambda r: r.number)
        run = cls(path=path, meta=meta, trials=trials)
        for arch_id in sorted({r.arch_id for r in trials}):
            if not is_arch_id(arch_id):
                run.problems.append(f"arch id {arch_id[:80]!r} is not a plain identifier: its files were not read")
        return run

    # -------------------------------------------------------------- run.json, checked
    @property
    def config(self) -> dict[str, Any]:
        return as_dict(self.meta.get("config"))

    @property
    def summary(self) -> dict[str, Any]:
        return as_dict(self.meta.get("summary"))

    @property
    def budget(self) -> Budget | None:
        """The run's budget rule (None when run.json does not state a valid one)."""
        limit = number(self.config.get("budget_ms"))
        stat = self.config.get("budget_stat", "median")
        if limit is None or limit <= 0 or stat not in ("median", "p90"):
            return None
        return Budget(limit, stat)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """Low-resolution input (H, W) from the workload, else from the config."""
        wl = as_dict(self.meta.get("workload"))
        h, w = integer(wl.get("height")), integer(wl.get("width"))
        if h and w and h > 0 and w > 0:
            return h, w
        size = self.config.get("input_size")
        if isinstance(size, list) and len(size) == 2 and all(integer(v) and integer(v) > 0 for v in size):
            return int(size[0]), int(size[1])
        return None

    @property
    def targets(self) -> list[dict[str, Any]]:
        """run.json's ``targets`` (a ``--target`` run: each target's name, budget and devices), checked."""
        found = self.meta.get("targets")
        return [t for t in found if isinstance(t, dict) and isinstance(t.get("name"), str)
                and number(t.get("budget_ms")) is not None] if isinstance(found, list) else []

    @property
    def baselines(self) -> list[dict[str, Any]]:
        """run.json's ``baselines`` (the user's own graphs), checked: each with a name and, where known, numbers."""
        found = self.meta.get("baselines")
        out = []
        for b in found if isinstance(found, list) else []:
            if not isinstance(b, dict) or not isinstance(b.get("name"), str):
                continue
            views = {v: as_dict(b.get(v)) for v in ("pretrained", "retrained", "retrained_final")}
            out.append({"name": b["name"], "arch_id": str(b.get("arch_id", "")), "channels": str(b.get("channels", "")),
                        "latency_ms": number(b.get("latency_ms")), "latency_p90_ms": number(b.get("latency_p90_ms")),
                        "retrained_note": b.get("retrained_note") if isinstance(b.get("retrained_note"), str) else None,
                        "target_ms": {k[len(TARGET_PREFIX):]: number(v) for k, v in b.items()
                                      if k.startswith(TARGET_PREFIX)},   # a --target run: each target's latency
                        "retrained_final_steps": integer(views["retrained_final"].get("steps")),
                        **{f"{v}_gain_db": number(d.get("psnr_gain_db")) for v, d in views.items()}})
        return out

    def best(self) -> TrialRow | None:
        return best_trial(self.trials)

    def trial(self, number_: int) -> TrialRow | None:
        return next((r for r in self.trials if r.number == number_), None)

    # -------------------------------------------------------------- per-arch files, checked
    def arch_dir(self, arch_id: str) -> Path:
        if not is_arch_id(arch_id):
            raise UsageError(f"{self.path / TRIALS_CSV}: arch id {arch_id[:80]!r} is malformed")
        return self.path / ARCHS / arch_id

    def spec(self, arch_id: str) -> ArchSpec:
        """The validated arch.json of ``arch_id``, canonical (a run dir from before issue #25 may key a spec by the
        id of its JSON as written: ``ArchSpec.answers_to``); SpecError when missing, malformed or not that arch."""
        from search_spaces import SpecError, load_spec

        folder = self.arch_dir(arch_id)
        spec = load_spec(str(folder / "arch.json"))
        if not spec.answers_to(arch_id):
            raise SpecError(f"{folder}/arch.json describes arch {spec.arch_id[:12]}, not {arch_id[:12]}: "
                            "the run dir was edited")
        return spec

    def precision_dir(self, arch_id: str, precision: str = "") -> Path:
        """Where a trial's files are: archs/<arch_id>/, or its precision's folder for a precision other than the
        backend's own (``RunDirWriter.arch_dir``)."""
        if precision and precision not in ("fp32", "fp16", "int8"):
            raise UsageError(f"{self.path / TRIALS_CSV}: precision {precision[:20]!r} is not one of fp32, fp16, int8")
        return self.arch_dir(arch_id) / precision if precision else self.arch_dir(arch_id)

    def record(self, arch_id: str, name: str, precision: str = "") -> dict[str, Any] | None:
        """archs/<arch_id>/[<precision>/]<name> (latency.json, train.json, int8.json) as a dict; None when absent."""
        path = self.precision_dir(arch_id, precision) / name
        return read_json_object(path) if path.is_file() else None

    def training(self, arch_id: str, precision: str = "") -> dict[str, Any] | None:
        """The record of the training whose weights ``weights`` gives: a finalist's final.json, else train.json."""
        return self.record(arch_id, FINAL_FILES[1], precision) or self.record(arch_id, TRAIN_FILES[1], precision)

    def weights(self, arch_id: str, precision: str = "") -> dict[str, torch.Tensor]:
        """The trained weights of ``arch_id`` (safetensors: never unpickled), the finalists' longer training's when
        it had one, under the module names of its canonical spec (``restaged``: weights saved before issue #25 may
        name a conv of the head as the tail's)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from search_spaces.network import restaged

        folder = self.precision_dir(arch_id, precision)
        path = folder / FINAL_FILES[0]
        path = path if path.is_file() else folder / TRAIN_FILES[0]
        if not path.is_file():
            raise UsageError(f"{path} is missing: that trial has no trained weights")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UsageError(f"{path} is not a readable safetensors file: {exc}") from None
        return restaged(self.spec(arch_id), state)
