"""What a bench runs: its config and flag parsers, and the statistics it reports (spread, Spearman)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.search.config import DEFAULT_FINALISTS, DEFAULT_SAMPLER, DEFAULT_TRIALS, SAMPLERS

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
    reparam: str | None = None         # None: TrainConfig's default; searches and references train alike
    train_dtype: str = "auto"          # --train-dtype of every training (auto: bf16 where native)
    long_steps: int | None = None      # None: LONG_FACTOR x the short steps
    finalists: int = DEFAULT_FINALISTS  # each search's finalists, trained --final-steps (default: the long steps)
    final_steps: int | None = None
    task: str = "sr2x"
    backend: str = "auto"
    input_size: tuple[int, int] | None = None
    out: str = "bench"
    latency_db: str | None = None
    baselines: tuple[tuple[str, str], ...] = ()  # --baseline NAME=model.onnx: the user's own networks
    precision: str | None = None       # --precision of every search (None: the backend's own)

    def validate(self) -> None:
        """Reject bad values with one line naming the flag, before anything is written."""
        if not self.budgets or any(not math.isfinite(b) or b <= 0 for b in self.budgets):
            raise UsageError(f"--budgets must be positive milliseconds, got {list(self.budgets)}")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise UsageError(f"--seeds must be non-negative integers, got {list(self.seeds)}")
        unknown = [s for s in self.samplers if s not in SAMPLERS]
        if unknown or len(set(self.samplers)) != len(self.samplers) or "random" not in self.samplers[1:]:
            raise UsageError(f"--samplers must list distinct samplers of {', '.join(SAMPLERS.names())}, "
                             f"the search first and random among the others (the control), "
                             f"got {','.join(self.samplers)}")
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        if self.finalists < 0:
            raise UsageError(f"--finalists must be 0 (off) or more, got {self.finalists}")
        for flag, steps in (("--train-steps", self.train_steps), ("--long-steps", self.long_steps),
                            ("--final-steps", self.final_steps)):
            if steps is not None and steps < 1:
                raise UsageError(f"{flag} must be at least 1, got {steps}")
        from nas.training.reparam import KINDS as REPARAM_KINDS  # here: nas --help imports no torch

        if self.reparam is not None and self.reparam not in REPARAM_KINDS:
            raise UsageError(f"--reparam must be one of {', '.join(REPARAM_KINDS)}, got {self.reparam!r}")
        if self.task not in SR_TASKS:
            raise UsageError(f"--task must be one of {', '.join(SR_TASKS)} (the bench compares against "
                             f"bicubic and bilinear upsampling), got {self.task!r}")



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




def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (a diverged training) replaced by None: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
