"""`nas bench`: does the search beat hand-designed networks, and blind search, at equal latency?

The package: ``config`` (BenchConfig, flag parsers, statistics), ``run`` (Bench: the searches, the
references, the long trainings), ``judge`` (classical baselines, the targets), ``render`` (bench.md).
"""

from __future__ import annotations

from nas.bench.config import (
    DEFAULT_BUDGETS,
    DEFAULT_SAMPLERS,
    DEFAULT_SEEDS,
    BenchConfig,
    finite,
    parse_budgets,
    parse_samplers,
    parse_seeds,
    spearman,
    spread,
)
from nas.bench.judge import classical_scores, targets
from nas.bench.render import render_md
from nas.bench.run import Bench, ClassicalResize

__all__ = ["DEFAULT_BUDGETS", "DEFAULT_SAMPLERS", "DEFAULT_SEEDS", "Bench", "BenchConfig", "ClassicalResize",
           "classical_scores", "finite", "parse_budgets", "parse_samplers", "parse_seeds", "render_md",
           "spearman", "spread", "targets"]
