"""What a search aims at: the budget rule, the input size, and the resolved target (docs/architecture.md).

``Budget`` is the one place that decides which latency statistic counts and whether a latency is
over the budget; the search's gate, trials.csv, the report's chart and the export all ask it.
``parse_input_size`` and ``default_input_size`` are the one parser and the one set of defaults for
the low-resolution input. ``Target`` resolves flags into the search space, backend, workload, budget
and training config that ``Search`` and ``Bench`` run against, without writing anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError

if TYPE_CHECKING:
    from latency_db import Backend, LatencyStore, Workload
    from nas.training.data import TaskData
    from nas.training.train import TrainConfig
    from search_spaces import SearchSpace

BUDGET_STATS = ("median", "p90")
CPU_INPUT_SIZE = (135, 240)   # a 270x480 output at x2: what a 2-core CPU can do in a few ms
GPU_INPUT_SIZE = (540, 960)   # a 1080p output at x2: render low, display high
MIN_SIDE, MAX_SIDE = 8, 8192


# The close-call band around a budget (reports/latency_repeat.md): a first visit's estimate came out up to
# CLOSE_ABOVE over the row's settled one in most nets, and a settled estimate below it by CLOSE_BELOW at most.
CLOSE_ABOVE, CLOSE_BELOW = 0.30, 0.05
# A row timed only inside the machine's slow spells (cpu-*-v3, latency_db/spells.py) may be this much over its quiet
# latency: the most spell-sensitive small net measured ran 1.5-1.7x slower in a spell (reports/latency_repeat.md).
SPELL_ABOVE = 0.70


@dataclass(frozen=True)
class Budget:
    """A per-frame latency limit on one statistic of the measured samples (median or p90)."""

    limit_ms: float
    stat: str = "median"

    def __post_init__(self) -> None:
        if (isinstance(self.limit_ms, bool) or not isinstance(self.limit_ms, (int, float))
                or not math.isfinite(self.limit_ms) or self.limit_ms <= 0):
            raise UsageError(f"--budget-ms must be a positive number of milliseconds, got {self.limit_ms}")
        if self.stat not in BUDGET_STATS:
            raise UsageError(f"--budget-stat must be one of {', '.join(BUDGET_STATS)}, got {self.stat!r}")

    @property
    def column(self) -> str:
        """The trials.csv column holding the statistic the budget applies to."""
        return "latency_ms" if self.stat == "median" else "latency_p90_ms"

    def value(self, median_ms: float | None, p90_ms: float | None) -> float | None:
        """The statistic that counts, from a median and a p90 (None when it is missing)."""
        value = median_ms if self.stat == "median" else p90_ms
        return value if isinstance(value, (int, float)) and math.isfinite(value) else None

    def value_of(self, latency: Any) -> float | None:
        """The statistic that counts, from a LatencyResult or a mapping with median_ms / p90_ms."""
        if isinstance(latency, Mapping):
            return self.value(latency.get("median_ms"), latency.get("p90_ms"))
        return self.value(getattr(latency, "median_ms", None), getattr(latency, "p90_ms", None))

    def admits_ms(self, value: float | None) -> bool:
        return value is not None and value <= self.limit_ms

    def admits(self, latency: Any) -> bool:
        """True when the latency's statistic is known and within the limit."""
        return self.admits_ms(self.value_of(latency))

    def over(self, latency: Any) -> bool:
        """True when the latency's statistic is known and above the limit (unknown is neither)."""
        value = self.value_of(latency)
        return value is not None and value > self.limit_ms

    def close_call(self, value: float | None, in_spell: bool = False) -> bool:
        """Within the CPU's measured noise band of the limit: the verdict of one visit may be wrong. CPU noise
        is one-sided (a slow spell only adds time), so the band reaches further above the limit than below, and
        further still for a row timed only inside slow spells (``in_spell``)."""
        above = SPELL_ABOVE if in_spell else CLOSE_ABOVE
        return value is not None and self.limit_ms * (1 - CLOSE_BELOW) <= value <= self.limit_ms * (1 + above)

    def describe(self) -> str:
        return f"{self.limit_ms:g} ms ({self.stat})"


LOCAL_TARGET = "local"  # --target local: this machine's --backend, measured here as without --target


@dataclass(frozen=True)
class TargetBudget:
    """One device a search aims at (``--target NAME[=MS]``) and its budget; ``local`` is this machine."""

    name: str
    budget: Budget


def target_budgets(targets: list[tuple[str, float | None]], budget_ms: float | None,
                   stat: str) -> tuple[Budget, tuple[TargetBudget, ...]]:
    """The study's budget and each target's, from ``--target NAME[=MS]`` and ``--budget-ms``: a target without
    ``=MS`` gets ``--budget-ms``. The study's budget (trials.csv's ``latency_ms`` column, the samplers' scale) is
    the first target's; without targets, ``--budget-ms``."""
    names = [name for name, _ in targets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"--target {repeated[0]} is given twice: give each target once")
    out = []
    for name, ms in targets:
        if ms is None and budget_ms is None:
            raise UsageError(f"--target {name} has no budget: give it as {name}=MS or give --budget-ms")
        out.append(TargetBudget(name, Budget(ms if ms is not None else budget_ms, stat)))
    if not out:
        if budget_ms is None:
            raise UsageError("--budget-ms is required (or give every --target its budget as NAME=MS)")
        return Budget(budget_ms, stat), ()
    return out[0].budget, tuple(out)


def parse_input_size(text: str, flag: str = "--input-size") -> tuple[int, int]:
    """'135x240' -> (135, 240); anything else is a usage error that shows the expected form."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"{flag} must look like HxW (e.g. 135x240), got {text!r}")
    h, w = (int(p) for p in parts)
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise UsageError(f"{flag} {h}x{w} is out of range: each side must be {MIN_SIDE}..{MAX_SIDE}")
    return h, w


def default_input_size(is_gpu: bool) -> tuple[int, int]:
    """The low-resolution input measured when none is given: GPU backends see 1080p output frames."""
    return GPU_INPUT_SIZE if is_gpu else CPU_INPUT_SIZE


def resolve_backend(name: str) -> Backend:
    """The backend for ``--backend`` (auto: the best one present); an unknown name is a usage error."""
    from latency_db import BackendError
    from latency_db import resolve_backend as resolve

    try:
        return resolve(name)
    except BackendError as exc:
        raise UsageError(f"--backend: {exc}") from None


def open_latency_store(url: str | None) -> LatencyStore:
    """The latency database at ``url`` (default: $NAS_LATENCY_DB or the user cache dir)."""
    from latency_db import StoreError, open_store

    try:
        return open_store(url)
    except StoreError as exc:
        raise UsageError(f"--latency-db: {exc}") from None


@dataclass(frozen=True)
class Target:
    """A resolved target: the space, the backend and its device, the input, the budget and the training.

    Built by ``Target.resolve`` from flags; resolving writes nothing (the latency database and the
    data are opened by ``open_store`` and ``load_data`` when the caller is ready to).
    """

    space: SearchSpace
    backend: Backend
    input_size: tuple[int, int]
    budget: Budget
    train_config: TrainConfig
    fingerprint: dict[str, Any]
    latency_db: str | None = None
    data: str | None = None
    val_data: str | None = None
    # how unpaired frames become inputs (nas.training.degrade.degradation_tag)
    degradation: str = "bicubic"
    jpeg_quality: int = 90                      # --degradation video
    val_sequence: bool = False                  # the validation frames are a clip: flicker is measured
    min_shift_consistency: float | None = None  # dB; a trained candidate below it is not eligible to win
    targets: tuple[TargetBudget, ...] = ()      # --target: the devices measured (none: this machine, --budget-ms)
    precisions: tuple[str, ...] = ()            # --precision (none: the backend's own; two or more: searched)

    @classmethod
    def resolve(cls, *, budget: Budget, task: str = "sr2x", backend: str = "auto",
                input_size: tuple[int, int] | None = None, loss: str = "l1", seed: int = 0,
                train_steps: int | None = None, reparam: str | None = None, train_dtype: str = "auto",
                noise_sigma: float = 25.0,
                latency_db: str | None = None, data: str | None = None, val_data: str | None = None,
                degradation: str = "bicubic", jpeg_quality: int = 90, val_sequence: bool = False,
                min_shift_consistency: float | None = None, targets: tuple[TargetBudget, ...] = (),
                precision: str | None = None, emulate_bf16: bool = False) -> Target:
        from nas.training.degrade import degradation_tag
        from nas.training.dtype import resolve_train_dtype
        from nas.training.train import TrainConfig
        from search_spaces import get_space

        if not math.isfinite(noise_sigma) or noise_sigma < 0:
            raise UsageError(f"--noise-sigma must be a non-negative number, got {noise_sigma}")
        if min_shift_consistency is not None and not math.isfinite(min_shift_consistency):
            raise UsageError(f"--min-shift-consistency must be a finite number of dB, got {min_shift_consistency}")
        degradation_tag(degradation, jpeg_quality)  # a one-line UsageError for a bad name or quality
        space = get_space(task)
        chosen = resolve_backend(backend)
        precisions: tuple[str, ...] = ()
        if precision is not None:  # one line, exit 2, for a bad value or one the backend lacks
            from latency_db.precision import check_offered, parse_precisions

            precisions = parse_precisions(precision)
            check_offered(chosen.name, precisions)
        dtype = resolve_train_dtype(train_dtype, "cuda" if chosen.is_gpu else "cpu", emulate=emulate_bf16)
        train_kwargs: dict[str, Any] = {"loss": loss, "seed": seed, "train_dtype": dtype}
        if train_steps is not None:
            train_kwargs["steps"] = train_steps
        if reparam is not None:
            train_kwargs["reparam"] = reparam
        if space.data_kind == "denoise":
            train_kwargs["noise_sigma"] = noise_sigma
        return cls(space=space, backend=chosen, input_size=input_size or default_input_size(chosen.is_gpu),
                   budget=budget, train_config=TrainConfig(**train_kwargs), fingerprint=chosen.fingerprint(),
                   latency_db=latency_db, data=data, val_data=val_data, degradation=degradation,
                   jpeg_quality=jpeg_quality, val_sequence=val_sequence, min_shift_consistency=min_shift_consistency,
                   targets=targets, precisions=precisions)

    @property
    def workload(self) -> Workload:
        from latency_db import Workload

        h, w = self.input_size
        return Workload(height=h, width=w, scale=self.space.scale, io_dtype=self.backend.default_io_dtype)

    @property
    def device(self) -> str:
        """The torch device candidates train on: the GPU whose latency is measured, else the CPU."""
        return "cuda" if self.backend.is_gpu else "cpu"

    @property
    def device_name(self) -> str:
        return str(self.fingerprint["device"])

    def load_data(self) -> TaskData:
        from nas.training.data import load_data

        return load_data(self.space.data_kind, self.space.scale, self.train_config.patch_size, self.data,
                         self.val_data, degradation=self.degradation, jpeg_quality=self.jpeg_quality,
                         val_sequence=self.val_sequence)

    def open_store(self) -> LatencyStore:
        return open_latency_store(self.latency_db)

    def describe(self) -> str:
        h, w = self.input_size
        s = self.space.scale
        return (f"backend {self.backend.name} on {self.device_name}; input {h}x{w} "
                f"({self.space.name}: output {h * s}x{w * s}); budget {self.budget.describe()}")
