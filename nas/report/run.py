"""The run dir as the report reads it: the checked RunDir, its trials as a DataFrame, the arch files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError
from nas.rundir import TRIALS_CSV_COLUMNS, RunDir, target_columns
from nas.target import Budget
from search_spaces.spec import is_arch_id

if TYPE_CHECKING:
    import pandas as pd

    from search_spaces import ArchSpec



@dataclass
class Run:
    """A run dir as the report reads it: the checked RunDir, its trials as a DataFrame, and the
    per-arch files that exist."""

    dir: RunDir
    trials: pd.DataFrame
    specs: dict[str, ArchSpec] = field(default_factory=dict)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # unreadable per-arch files, shown in the page

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def meta(self) -> dict[str, Any]:
        return self.dir.meta

    @property
    def budget(self) -> Budget | None:
        return self.dir.budget

    @property
    def budget_ms(self) -> float | None:
        return self.budget.limit_ms if self.budget else None

    @property
    def latency_column(self) -> str:
        """The latency statistic the budget applies to: the charts plot it against the budget line."""
        return self.budget.column if self.budget else "latency_ms"

    @property
    def targets(self) -> list[dict[str, Any]]:
        """run.json's targets (``--target``), each with its name, budget and devices; empty for a local run."""
        return self.dir.targets

    @property
    def latency_label(self) -> str:
        return self.budget.stat if self.budget else "median"

    @property
    def input_hw(self) -> tuple[int, int] | None:
        return self.dir.input_size

    def reparam_of(self, arch_id: str) -> str | None:
        """The re-parameterized block kind the trial trained with (train.json), None when plain or unknown."""
        from nas.training.reparam import KINDS

        config = self.train.get(arch_id, {}).get("train_config")
        kind = config.get("reparam") if isinstance(config, dict) else None
        return kind if kind in KINDS and kind != "none" else None

    def summary_of(self, row: Any) -> str:
        """One-line architecture: from the validated arch.json, else the CSV's text (raw, escape it)."""
        spec = self.specs.get(row.arch_id)
        return spec.summary() if spec is not None else str(row.summary or "(no arch.json)")

    def candidates(self) -> pd.DataFrame:
        """Trials that were trained in full and have a gain, reference nets included (the search enqueues
        them as trials, so one can win); trials the pruner stopped at a rung are ``stopped()``."""
        t = self.trials
        return t[t.trained & t.stopped_at.isna() & t.psnr_gain_db.notna() & t[self.latency_column].notna()]

    def stopped(self) -> pd.DataFrame:
        """Trials the pruner stopped at a rung, with their gain there."""
        t = self.trials
        return t[t.stopped_at.notna() & t.psnr_gain_db.notna() & t[self.latency_column].notna()]

    def winner(self) -> Any | None:
        """The run's best trial, by the run dir's one rule (nas.rundir.best_trial)."""
        best = self.dir.best()
        if best is None:
            return None
        hit = self.trials[self.trials.number == best.number]
        return next(hit.itertuples()) if len(hit) else None



# ---------------------------------------------------------------------- reading the run dir
def load_run(run_dir: Path) -> Run:
    """Read and check a run dir; a missing or malformed run.json / trials.csv raises UsageError."""
    import pandas as pd

    from search_spaces import SpecError

    rd = RunDir.load(Path(run_dir))
    names = [t["name"] for t in rd.targets]
    columns = list(TRIALS_CSV_COLUMNS) + list(target_columns(names))
    trials = pd.DataFrame([r.flat(names) for r in rd.trials], columns=columns)
    for col in columns:
        if col in ("over_budget", "trained", "latency_cached", "train_cached", "verified"):
            trials[col] = trials[col].astype(bool)
        elif col not in ("number", "state", "arch_id", "reference", "summary", "error", "worker", "verdict_change",
                         "rejected_by", "precision"):
            trials[col] = pd.to_numeric(trials[col], errors="coerce")
    trials["number"] = trials.number.astype(int)
    run = Run(dir=rd, trials=trials.reset_index(drop=True), problems=list(rd.problems))
    for arch_id in sorted(set(run.trials.arch_id)):
        if not is_arch_id(arch_id):
            continue  # RunDir.load has said so in problems
        folder = rd.arch_dir(arch_id)
        if (folder / "arch.json").is_file():
            try:
                run.specs[arch_id] = rd.spec(arch_id)
            except SpecError as exc:
                run.problems.append(str(exc))
        for name, target in (("latency.json", run.latency), ("train.json", run.train)):
            try:
                record = rd.record(arch_id, name)
            except UsageError as exc:
                run.problems.append(f"archs/{arch_id}/{name}: {exc}")
                continue
            if record is not None:
                target[arch_id] = record
    return run
