"""How a search runs: its config, the samplers and pruners by name, and the study's default name.

The what (task, budget, backend, training) is the ``Target`` (nas/target.py); this is the how. The
registries load Optuna only when a sampler or pruner is made, so ``nas --help`` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError
from nas.search.latency_guard import PREDICTOR_MODES
from search_spaces.registry import Registry

if TYPE_CHECKING:
    from nas.target import Budget, Target

DEFAULT_SAMPLER = "evolution"   # budget-aware regularized evolution (nas/samplers.py; reports/bench.md)
DEFAULT_TRIALS = 50  # at 4 ms on 2 CPU cores: 2-3 minutes (reports/search_default.md)
# chosen by the equal-wall-time benchmark: pruning won nothing beyond noise (reports/pruning.md)
DEFAULT_PRUNER = "none"
# the finalists (nas/search/finalists.py): how many of the best short-trained candidates are trained longer, and
# how much longer (chosen by measurement, reports/finalists.md); FINAL_FACTOR matches nas bench's long training so
# that the bench's long trainings of the winners are the search's own, from the training cache
DEFAULT_FINALISTS = 3
FINAL_FACTOR = 4


@dataclass(frozen=True)
class SearchConfig:
    """How the search loop runs (what it searches for is the Target): trials, sampler, where it keeps state."""

    trials: int = DEFAULT_TRIALS
    seed: int = 0
    sampler: str = DEFAULT_SAMPLER              # one of SAMPLERS
    run_dir: str | None = None                  # None: runs/<study>
    storage: str | None = None                  # None: a journal file in the run dir
    study: str | None = None                    # None: derived from the target, seed and sampler
    warm_start: bool = True
    predictor: str | None = None                # off | screen | guide; None: screen when trusted (nas/latency_guard.py)
    pruner: str = DEFAULT_PRUNER                # one of PRUNERS: stops trainings that are behind at a rung
    timeout_s: float | None = None              # stop asking for trials after this long (the current one finishes)
    target_timeout_s: float = 600.0             # --target: the longest wait for an agent to finish one job
    finalists: int = DEFAULT_FINALISTS          # --finalists: the best K trained in budget are trained longer (0: off)
    final_steps: int | None = None              # --final-steps; None: FINAL_FACTOR x the short training's steps

    def __post_init__(self) -> None:
        """Reject bad values with one line naming the flag (raised before anything is written)."""
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise UsageError(f"--timeout must be a positive number of seconds, got {self.timeout_s!r}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS.names())}, got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise UsageError(f"--pruner must be one of {', '.join(PRUNERS.names())}, got {self.pruner!r}")
        if self.predictor is not None and self.predictor not in PREDICTOR_MODES:
            raise UsageError(f"--predictor must be one of {', '.join(PREDICTOR_MODES)}, got {self.predictor!r}")
        if self.predictor == "guide" and self.sampler != "evolution":
            raise UsageError(f"--predictor guide steers the evolution sampler; --sampler is {self.sampler!r}")
        if self.finalists < 0:
            raise UsageError(f"--finalists must be 0 (off) or more, got {self.finalists}")
        if self.final_steps is not None and self.final_steps < 1:
            raise UsageError(f"--final-steps must be at least 1, got {self.final_steps}")

    def final_steps_for(self, train_steps: int) -> int:
        """The finalists' training steps: --final-steps, else FINAL_FACTOR x the short training's."""
        return self.final_steps if self.final_steps is not None else FINAL_FACTOR * train_steps



def default_study_name(target: Target, config: SearchConfig) -> str:
    from nas.training.degrade import DEFAULT_DEGRADATION, degradation_tag

    budget = f"{target.budget.limit_ms:g}".replace(".", "p")
    # another sampler (the random control) or degradation gets a study and run dir of its own
    sampler = "" if config.sampler == DEFAULT_SAMPLER else f"-{config.sampler}"
    tag = degradation_tag(target.degradation, target.jpeg_quality)
    degradation = "" if tag == DEFAULT_DEGRADATION else f"-{tag}"
    h, w = target.input_size
    if target.targets:  # --target: the devices and their budgets name the study
        devices = "-".join(f"{t.name}{t.budget.limit_ms:g}".replace(".", "p") for t in target.targets)
        return f"{target.space.name}{degradation}-{h}x{w}-{target.budget.stat}-{devices}ms-seed{config.seed}{sampler}"
    return (f"{target.space.name}{degradation}-{target.backend.name}-{h}x{w}-{target.budget.stat}{budget}ms-"
            f"seed{config.seed}{sampler}")


# Optuna samplers by ``--sampler`` name: (budget, seed, predictor guide or None, the evolution's keyword arguments
# from the search's precisions, PrecisionPlan.evolution, or None) -> sampler. Optuna loads only when one is made.
SAMPLERS: Registry[Callable[[Budget, int, Any, Any], Any]] = Registry("sampler")


@SAMPLERS.register("evolution")
def _evolution(budget: Budget, seed: int, guide: Any = None, evolution: Any = None) -> Any:
    """Budget-aware regularized evolution (nas/samplers.py), the default; ``guide`` picks among children;
    ``evolution`` holds ``complete`` (a child's network, so that none repeats one the study has) and, with several
    precisions, the precision's mutation rate and its switch's latency projection (nas/search/precision.py)."""
    from nas.search.samplers import EvolutionSampler

    return EvolutionSampler(budget=budget, seed=seed, guide=guide, **(evolution or {}))


@SAMPLERS.register("tpe")
def _tpe(budget: Budget, seed: int, guide: Any = None, evolution: Any = None) -> Any:
    """Optuna's TPE, with the budget as a constraint (told through ``latency_gate``)."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


@SAMPLERS.register("random")
def _random(budget: Budget, seed: int, guide: Any = None, evolution: Any = None) -> Any:
    """Random search: the blind-search control of ``nas bench``."""
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


@dataclass(frozen=True)
class Pruning:
    """An Optuna pruner and the training steps (rungs) at which a candidate reports its validation gain to it."""

    pruner: Any
    rungs: tuple[int, ...]


# Pruners by ``--pruner`` name: (full training steps) -> Pruning. The first rung is a fifth of the
# training (100 of 500 steps), where the gain already ranks candidates (reports/pruning.md).
PRUNERS: Registry[Callable[[int], Pruning]] = Registry("pruner")


def first_rung(steps: int) -> int:
    """The first rung: a fifth of the training, at least one step."""
    return max(1, steps // 5)


@PRUNERS.register("none")
def _no_pruner(steps: int) -> Pruning:
    """Every candidate under the budget is trained in full (no rungs: no extra validations)."""
    import optuna

    return Pruning(optuna.pruners.NopPruner(), ())


@PRUNERS.register("sha")
def _sha(steps: int) -> Pruning:
    """Successive halving: at each rung (a fifth, then two fifths of the training) a candidate goes on
    only when its gain is in the top half of those that reached that rung."""
    import optuna

    r0 = first_rung(steps)
    rungs = tuple(r for r in (r0, 2 * r0) if r < steps)
    return Pruning(optuna.pruners.SuccessiveHalvingPruner(min_resource=r0, reduction_factor=2), rungs)


@PRUNERS.register("hyperband")
def _hyperband(steps: int) -> Pruning:
    """Hyperband over successive-halving brackets with a reduction factor of 3 from a fifth of the training."""
    import optuna

    r0 = first_rung(steps)
    rungs = tuple(r for r in (r0, 3 * r0) if r < steps)
    return Pruning(optuna.pruners.HyperbandPruner(min_resource=r0, max_resource=steps, reduction_factor=3), rungs)

