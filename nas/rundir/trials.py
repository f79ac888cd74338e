"""trials.csv in code: the typed row, the one reader of a trial record into a row, the one winner rule.

``TrialRow`` is one row of trials.csv (docs/run_dir.md); ``trial_row`` makes it from a trial record
(nas/trial_record.py) and the budget rule; ``best_trial`` picks the winner for the search's summary,
the report, the export and the bench; ``number``/``integer``/``as_dict`` check values read from files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.target import Budget
from nas.trial_record import TrialRecord

TRIALS_CSV_COLUMNS = (
    "number", "state", "arch_id", "reference", "summary", "latency_ms", "latency_p90_ms", "latency_cov",
    "latency_first_ms", "latency_visits", "verified", "verdict_change", "roofline_ms", "over_budget", "trained",
    "stopped_at", "psnr_db", "bicubic_psnr_db", "psnr_gain_db", "ssim", "shift_consistency_db", "temporal_psnr_db",
    "final_steps", "final_psnr_gain_db", "measure_s", "train_s", "latency_cached", "train_cached", "macs", "params",
    "bytes_moved", "error", "worker", "precision", "float_gain_db", "ptq_gain_db", "qat_gain_db",
)
REQUIRED_COLUMNS = ("number", "arch_id", "latency_ms", "over_budget", "trained", "psnr_gain_db")
TARGET_PREFIX, REJECTED_BY = "latency_ms@", "rejected_by"   # --target runs only: one latency column per target


def target_columns(names: Iterable[str]) -> tuple[str, ...]:
    """The columns a run with ``--target`` adds after TRIALS_CSV_COLUMNS: each target's latency (the budget's
    statistic), then the targets that rejected the trial."""
    names = tuple(names)
    return (*(TARGET_PREFIX + n for n in names), REJECTED_BY) if names else ()


# ---------------------------------------------------------------------- checked values
def number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, empty, text, NaN, bool)."""
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def integer(value: Any) -> int | None:
    f = number(value)
    return int(f) if f is not None and f == int(f) else None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def cell(value: Any) -> Any:
    """A trials.csv cell: finite floats in 6 significant digits, None and non-finite numbers empty."""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return "" if value is None else value


@dataclass(frozen=True)
class TrialRow:
    """One row of trials.csv, typed: numbers are finite floats or None, flags are bools."""

    number: int
    state: str = ""
    arch_id: str = ""
    reference: str = ""
    summary: str = ""
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_cov: float | None = None
    latency_first_ms: float | None = None  # the first visit's estimate (CPU v2), before close-call and final re-timing
    latency_visits: int | None = None      # visits in the latency row (CPU v2)
    verified: bool = False                  # re-timed in the search's final verification round
    verdict_change: str = ""                # what that round changed ("fits after re-timing", ...), else empty
    roofline_ms: float | None = None
    over_budget: bool = False
    trained: bool = False
    stopped_at: int | None = None   # the training step where the pruner stopped it (PRUNED); None: not stopped
    psnr_db: float | None = None
    bicubic_psnr_db: float | None = None
    psnr_gain_db: float | None = None
    ssim: float | None = None
    shift_consistency_db: float | None = None
    temporal_psnr_db: float | None = None
    final_steps: int | None = None          # a finalist's longer training (nas/search/finalists.py): its steps
    final_psnr_gain_db: float | None = None  # and its gain; None: not a finalist (or its longer training failed)
    measure_s: float | None = None
    train_s: float | None = None
    latency_cached: bool = False
    train_cached: bool = False
    macs: float | None = None
    params: float | None = None
    bytes_moved: float | None = None
    error: str = ""
    worker: str = ""
    precision: str = ""                      # --precision: the trial's precision (empty: the backend's own)
    float_gain_db: float | None = None       # int8 trials: the float net's gain, PTQ's and QAT's (psnr_gain_db: the
    ptq_gain_db: float | None = None         # int8 net's, as ONNX Runtime runs it)
    qat_gain_db: float | None = None
    target_ms: dict[str, float | None] = field(default_factory=dict)  # --target: name -> latency (budget's statistic)
    rejected_by: str = ""                                                # --target: the targets over their budget

    @property
    def feasible(self) -> bool:
        """Trained in full within the budget with a gain: a candidate for the winner (a trial the pruner
        stopped at a rung never is, whatever its gain there)."""
        ok_state = self.state == "COMPLETE" if self.state else (self.trained and not self.over_budget)
        if self.verified and self.over_budget:  # the verification round found it over the budget
            ok_state = False
        return ok_state and self.trained and self.stopped_at is None and self.psnr_gain_db is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flat(self, targets: Iterable[str] = ()) -> dict[str, Any]:
        """The trials.csv row: the fixed columns, then, for a run with ``targets``, their columns."""
        out = {k: v for k, v in asdict(self).items() if k not in ("target_ms", "rejected_by")}
        names = tuple(targets)
        if names:
            out.update({TARGET_PREFIX + n: self.target_ms.get(n) for n in names})
            out[REJECTED_BY] = self.rejected_by
        return out


_FLOAT_FIELDS = tuple(f.name for f in fields(TrialRow) if "float" in str(f.type) and f.name != "target_ms")
_BOOL_FIELDS = tuple(f.name for f in fields(TrialRow) if str(f.type) == "bool")
_TEXT_FIELDS = tuple(f.name for f in fields(TrialRow) if str(f.type) == "str")


def trial_row(number_: int, state: str, record: TrialRecord, budget: Budget,
              verified: Mapping[int, Mapping[str, Any]] | None = None) -> TrialRow:
    """The trials.csv row of a finished trial, from its trial record and, when the search's verification round
    re-timed it, its verified latency (``verified``: trial number -> median_ms, p90_ms, visits)."""
    lat, tr, counts = record.latency, record.train, record.counts
    rejected = ";".join(record.rejected_by)
    again = (verified or {}).get(number_)
    final = lat if again is None else again
    change = ""
    if again is not None and budget.over(lat) != budget.over(again):
        change = "over the budget after re-timing" if budget.over(again) else "fits after re-timing"
    return TrialRow(
        number=number_, state=state, arch_id=record.arch_id, reference=record.reference,
        summary=record.summary, latency_ms=number(final.get("median_ms")),
        latency_p90_ms=number(final.get("p90_ms")), latency_cov=number(lat.get("cov")),
        latency_first_ms=number(lat.get("first_ms")) or number(lat.get("median_ms")),
        latency_visits=integer(final.get("visits")), verified=again is not None, verdict_change=change,
        roofline_ms=number(lat.get("roofline_ms")),
        over_budget=budget.over(final) or record.predicted_over_budget or bool(rejected),  # screened, or a target's
        trained=record.trained, stopped_at=integer(record.pruned_at_step),
        psnr_db=number(tr.get("psnr_db")), bicubic_psnr_db=number(tr.get("bicubic_psnr_db")),
        psnr_gain_db=number(tr.get("psnr_gain_db")), ssim=number(tr.get("ssim")),
        shift_consistency_db=number(tr.get("shift_consistency_db")),
        temporal_psnr_db=number(tr.get("temporal_psnr_db")),
        measure_s=number(lat.get("measure_s")), train_s=number(tr.get("train_s", 0.0 if lat else None)),
        latency_cached=lat.get("cached") is True, train_cached=record.train_cached,
        macs=number(counts.get("macs")), params=number(counts.get("params")),
        bytes_moved=number(counts.get("bytes_moved")), error=record.error, worker=record.run_dir,
        target_ms=record.target_ms, rejected_by=rejected, precision=record.precision,
        float_gain_db=number(record.int8.get("float_gain_db")), ptq_gain_db=number(record.int8.get("ptq_gain_db")),
        qat_gain_db=number(record.int8.get("qat_gain_db")),
    )


def by_gain(rows: Iterable[TrialRow], final: bool = False) -> list[TrialRow]:
    """Rows best first: by short-training gain (``final``: by the finalists' gain), ties to the lower latency,
    then the earlier trial."""
    def gain(r: TrialRow) -> float:
        return (r.final_psnr_gain_db if final else r.psnr_gain_db) or 0.0

    return sorted(rows, key=lambda r: (-gain(r), r.latency_ms if r.latency_ms is not None else math.inf, r.number))


def best_trial(rows: Iterable[TrialRow]) -> TrialRow | None:
    """The winner: the feasible trial with the highest gain; ties go to the lower latency, then the
    earlier trial. When finalists were trained longer, the winner is the finalist with the highest gain after
    that training. None when no trial is feasible."""
    feasible = [r for r in rows if r.feasible]
    finals = [r for r in feasible if r.final_psnr_gain_db is not None]
    ranked = by_gain(finals, final=True) if finals else by_gain(feasible)
    return ranked[0] if ranked else None


def summarize(rows: list[TrialRow]) -> dict[str, Any]:
    """run.json's summary counts and winner, from the trials table."""
    best = best_trial(rows)
    return {
        "n_trials": len(rows),
        "n_trained": sum(1 for r in rows if r.trained),
        "n_over_budget": sum(1 for r in rows if r.over_budget),
        "n_failed": sum(1 for r in rows if r.state == "FAIL"),
        "n_stopped": sum(1 for r in rows if r.stopped_at is not None),
        "n_latency_cache_hits": sum(1 for r in rows if r.latency_cached),
        "n_train_cache_hits": sum(1 for r in rows if r.train_cached),
        "best": None if best is None else {
            "trial": best.number, "arch_id": best.arch_id, "summary": best.summary, "reference": best.reference,
            "precision": best.precision,
            "latency_ms": best.latency_ms, "latency_p90_ms": best.latency_p90_ms, "psnr_gain_db": best.psnr_gain_db,
            "shift_consistency_db": best.shift_consistency_db, "temporal_psnr_db": best.temporal_psnr_db,
            "final_steps": best.final_steps, "final_psnr_gain_db": best.final_psnr_gain_db,
        },
    }


def parse_row(raw: Mapping[str, str], line: int, where: Path) -> TrialRow:
    values: dict[str, Any] = {}
    n = integer((raw.get("number") or "").strip())
    if n is None:
        raise UsageError(f"{where}: column 'number' must hold trial numbers (row {line})")
    values["number"] = n
    values["stopped_at"] = integer((raw.get("stopped_at") or "").strip())
    values["latency_visits"] = integer((raw.get("latency_visits") or "").strip())
    values["final_steps"] = integer((raw.get("final_steps") or "").strip())
    for name in _FLOAT_FIELDS:
        values[name] = number((raw.get(name) or "").strip())
    for name in _BOOL_FIELDS:
        values[name] = (raw.get(name) or "").strip().lower() == "true"
    for name in _TEXT_FIELDS:
        values[name] = (raw.get(name) or "").strip()
    values["target_ms"] = {k[len(TARGET_PREFIX):]: number((v or "").strip()) for k, v in raw.items()
                           if isinstance(k, str) and k.startswith(TARGET_PREFIX)}
    return TrialRow(**values)
