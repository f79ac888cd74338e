"""The trial record: what a search keeps on each Optuna trial (its user attributes), in one place.

A shared study is self-sufficient because every worker can rebuild any trial from these attributes
(docs/cluster.md). So their keys and shapes are a data contract: ``TrialRecorder`` alone writes them
(the search), ``TrialRecord.of`` alone reads them (the run dir, the shared study, the storage), and no
other module names a key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search_spaces import ArchSpec, Counts

# The user-attribute keys. A stored study is read back by these names: never rename one.
ARCH_ID, SPEC, SUMMARY, COUNTS = "arch_id", "spec", "summary", "counts"
REFERENCE, RUN_DIR = "reference", "run_dir"
PREDICTED_MS, PREDICTED_OVER = "predicted_ms", "predicted_over_budget"
LATENCY, LATENCY_RECORD = "latency", "latency_record"
TRAIN, TRAIN_CACHED, PRUNED_AT, ERROR = "train", "train_cached", "pruned_at_step", "error"
PRECISION, INT8 = "precision", "int8"  # --precision: the trial's precision (absent: the backend's own); int8 figures
TARGETS = "targets"   # --target: per target name, its latency figures and verdict (nas/search/targets.py)

# The latency and training figures kept in the record (the whole latency.json is kept beside them)
LATENCY_FIELDS = ("median_ms", "p90_ms", "cov", "roofline_ms", "cached", "measure_s", "unstable", "first_ms",
                  "visits")
# Per target of a --target search: its latency (the budget's statistic: ms), figures, device and verdict
TARGET_FIELDS = ("ms", "median_ms", "p90_ms", "cached", "device", "over", "error", "budget_ms")
INT8_FIELDS = ("float_gain_db", "ptq_gain_db", "qat_gain_db", "qat_steps", "method", "int8_s")
TRAIN_FIELDS = ("psnr_db", "bicubic_psnr_db", "ssim", "psnr_gain_db", "resumed_from", "moved",
                "shift_consistency_db", "temporal_psnr_db")


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _finite(value: Any) -> float | None:
    """A finite number as a float, else None (the storage is shared: nothing is trusted)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def reference_attrs(name: str) -> dict[str, Any]:
    """The user attributes of an enqueued warm start: which reference net it is."""
    return {REFERENCE: name}


@dataclass(frozen=True)
class TrialRecord:
    """A trial's user attributes as read back: every field typed, absent or malformed values as empty."""

    arch_id: str = ""
    spec_json: str | None = None
    summary: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    reference: str = ""
    run_dir: str = ""
    predicted_ms: float | None = None
    predicted_over_budget: bool = False
    latency: dict[str, Any] = field(default_factory=dict)          # LATENCY_FIELDS
    latency_record: dict[str, Any] | None = None                   # the whole latency.json
    train: dict[str, Any] = field(default_factory=dict)            # TRAIN_FIELDS and train_s
    train_cached: bool = False
    pruned_at_step: Any = None                                     # checked by its readers (an int when set)
    error: str = ""
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # --target: name -> figures and verdict
    precision: str = ""                                            # --precision (empty: the backend's own)
    int8: dict[str, Any] = field(default_factory=dict)             # INT8_FIELDS of an int8 trial

    @classmethod
    def of(cls, attrs: Mapping[str, Any]) -> TrialRecord:
        """Read a trial's (or a FrozenTrial's) user attributes; the storage is shared, so nothing is trusted."""
        spec = attrs.get(SPEC)
        predicted = attrs.get(PREDICTED_MS)
        record = attrs.get(LATENCY_RECORD)
        return cls(
            arch_id=str(attrs.get(ARCH_ID, "")), spec_json=spec if isinstance(spec, str) else None,
            summary=str(attrs.get(SUMMARY, "")), counts=_as_dict(attrs.get(COUNTS)),
            reference=str(attrs.get(REFERENCE, "") or ""), run_dir=str(attrs.get(RUN_DIR, "") or ""),
            predicted_ms=float(predicted) if isinstance(predicted, (int, float)) and math.isfinite(predicted) else None,
            predicted_over_budget=attrs.get(PREDICTED_OVER) is True,
            latency=_as_dict(attrs.get(LATENCY)), latency_record=record if isinstance(record, dict) else None,
            train=_as_dict(attrs.get(TRAIN)), train_cached=attrs.get(TRAIN_CACHED) is True,
            pruned_at_step=attrs.get(PRUNED_AT), error=str(attrs.get(ERROR, "") or ""),
            targets={str(k): v for k, v in _as_dict(attrs.get(TARGETS)).items() if isinstance(v, dict)},
            precision=str(attrs.get(PRECISION, "") or ""), int8=_as_dict(attrs.get(INT8)),
        )

    @property
    def trained(self) -> bool:
        return bool(self.train)

    @property
    def target_ms(self) -> dict[str, float | None]:
        """Each target's latency (the budget's statistic), in the order the targets were given."""
        return {name: _finite(t.get("ms")) for name, t in self.targets.items()}

    @property
    def rejected_by(self) -> list[str]:
        """The targets whose budget the candidate missed."""
        return [name for name, t in self.targets.items() if t.get("over") is True]

    def belongs_to(self, run_dir: Path) -> bool:
        """True when the trial was run by the worker of ``run_dir``."""
        return self.run_dir == str(Path(run_dir).resolve())


class TrialRecorder:
    """Writes one running trial's record, step by step, as the search learns it (the one writer)."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def _set(self, key: str, value: Any) -> None:
        self.trial.set_user_attr(key, value)

    def claimed_by(self, run_dir: Path) -> None:
        """The worker (run dir) that runs the trial: how a rerun worker finds its own killed trials."""
        self._set(RUN_DIR, str(Path(run_dir).resolve()))

    def candidate(self, spec: ArchSpec, counts: Counts) -> None:
        """What the trial is: the validated spec (any worker rebuilds the network from it) and its counts."""
        self._set(ARCH_ID, spec.arch_id)
        self._set(SPEC, spec.canonical_json())
        self._set(SUMMARY, spec.summary())
        self._set(COUNTS, {"macs": counts.macs, "params": counts.params, "bytes_moved": counts.bytes_moved})

    def predicted(self, ms: float) -> None:
        self._set(PREDICTED_MS, ms)

    def screened_out(self) -> None:
        """Predicted over the budget by more than the predictor's error: never measured nor trained."""
        self._set(PREDICTED_OVER, True)

    def measured(self, latency: Any) -> None:
        """The latency (a LatencyResult): its figures, and the whole latency.json so any worker rebuilds it."""
        self._set(LATENCY_RECORD, latency.to_dict())
        self._set(LATENCY, {name: getattr(latency, name) for name in LATENCY_FIELDS})

    def targets(self, outcomes: Mapping[str, Any]) -> None:
        """Each target's latency figures and verdict (``--target``: name -> an Outcome of nas/search/targets.py,
        whose TARGET_FIELDS are kept), in the order the targets were given."""
        self._set(TARGETS, {name: {k: getattr(o, k) for k in TARGET_FIELDS} for name, o in outcomes.items()})

    def trained(self, result: Any, cached: bool, spent_s: float) -> None:
        """A training's outcome (a TrainResult); ``spent_s`` is the time this run paid for it."""
        self._set(TRAIN_CACHED, cached)
        self._set(TRAIN, {**{name: getattr(result, name) for name in TRAIN_FIELDS}, "train_s": spent_s})

    def precision(self, precision: str) -> None:
        """The precision the trial is measured and scored in (only written when --precision was given)."""
        self._set(PRECISION, precision)

    def quantized(self, int8: Any) -> None:
        """The int8 figures (an Int8Result of nas/training/quantize.py): float, PTQ and QAT gains, the method."""
        d = int8.to_dict()
        self._set(INT8, {k: d[k] for k in INT8_FIELDS})

    def stopped_at(self, step: int) -> None:
        """The pruner stopped the training at this rung."""
        self._set(PRUNED_AT, step)

    def failed(self, message: str) -> None:
        self._set(ERROR, message)
