"""Summary statistics of latency samples (the numbers every row and result carries)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    median_ms: float
    p10_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    cov: float        # coefficient of variation: population std / mean
    n_samples: int


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        raise ValueError("no samples")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_ms: list[float]) -> Summary:
    s = sorted(samples_ms)
    mean = sum(s) / len(s)
    var = sum((x - mean) ** 2 for x in s) / len(s)
    return Summary(
        median_ms=percentile(s, 50), p10_ms=percentile(s, 10), p90_ms=percentile(s, 90),
        p99_ms=percentile(s, 99), mean_ms=mean, cov=(math.sqrt(var) / mean) if mean > 0 else 0.0,
        n_samples=len(s),
    )
