"""Budget-aware regularized evolution: an Optuna sampler for a search under a latency constraint.

Why not TPE alone: most candidates of a space miss a tight budget, and the best net sits near the
budget's edge, right beside nets that miss it. Random search spends most trials over budget; TPE
learns to avoid them but drifts to small, safe nets (reports/bench.md). Regularized evolution
(Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search") instead edits
good trials: a tournament among the most recent feasible trials picks a parent, and the child
changes one or two of its parameters. Here the edit knows the budget: a parent with latency to
spare grows (wider, deeper, larger kernels: the larger of ordered choices), a parent over the
budget shrinks, and the enqueued trials (the hand-designed reference nets) just over the budget are
parents too, so that a good design a few percent too slow is cut down to fit. The first
``n_startup_trials`` (the enqueued reference nets among them) are random.

A child whose searched precision changes (fp32 to int8: about half the latency on ONNX Runtime's CPU, reports/int8.md)
is then grown (or, the other way, shrunk) towards the budget in the same trial, as far as ``project`` (its latency
projected from its parent's) allows: one edit at a time, a parent switched to int8 keeps its size and leaves half the
budget unused, and the 48-trial benches' int8 winners used 4.75 and 5.13 ms of 8 (reports/int8.md).

A child never repeats a network the study already has: given the space's ``complete`` (a parameter dict to
the canonical spec it draws), two parameter dicts of one network count as one; without it, as before, a
child only never repeats a trial's exact parameters.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from nas.target import Budget

MAX_REDRAWS = 20   # mutations drawn again when the child would repeat a network the study already has
FILL_SHARE = 0.9   # a child whose precision changed is grown while its projected latency stays under this share
FILL_TRIES = 12    # one-step edits tried in growing (or shrinking) such a child
# a parameter dict (partial: a child's) -> the network it draws (hashable: the canonical spec) and all its parameters
Complete = Callable[[dict[str, Any], random.Random], tuple[Hashable, dict[str, Any]]]
# (parent's parameters, its latency in ms, a child's parameters, every measured trial's (parameters, ms)) -> the
# child's projected latency in ms, or None when its precision is its parent's (nas/search/precision.py)
Project = Callable[[dict[str, Any], float, dict[str, Any], list[tuple[dict[str, Any], float]]], float | None]


@dataclass(frozen=True)
class _Plan:
    """What one trial inherits: its parent's parameters and distributions, and the values that change (with
    ``complete``: every value of the child, a new layer's among them)."""

    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    changed: dict[str, Any]


def violation(trial: FrozenTrial) -> float:
    """How far a trial is over its constraints (0 when it meets them all)."""
    return sum(v for v in trial.constraints.values() if v > 0)


def grow_probability(trial: FrozenTrial, budget: float) -> float:
    """0.5 at the budget's edge, towards 0.9 the more latency the parent leaves unused (the constraint
    is latency minus budget, so -c/budget is the spare share); 0.1 over the budget, where any growth
    stays over it."""
    if violation(trial) > 0:
        return 0.1
    spare = -sum(trial.constraints.values()) / budget
    return min(0.9, 0.5 + spare)


class EvolutionSampler(BaseSampler):
    """Tournament selection from the last ``population`` feasible trials, then a budget-aware mutation.

    ``budget``'s limit is the constraint's scale (the constraint is latency minus the limit): it turns a
    parent's constraint value into the share of the budget it leaves unused. Parameters a child has
    but its parent lacked (a layer added by a deeper draw) are drawn at random.

    With probability ``p_shrink`` the parent is instead an enqueued trial (a design someone chose: the
    reference nets) just over the budget, within ``near`` of it: the best design may be one smaller
    layer away from it, and the feasible trials alone would never lead there. Random draws just over
    the budget are not used so: nothing says they are good designs, and their children were seen to
    waste trials over the budget.

    With ``guide`` (``--predictor guide``) it draws ``guide_children`` distinct children of the parent
    and keeps the one ``guide`` picks from their full parameter dicts (the one predicted closest under
    the budget).

    With ``complete`` (``SearchSpace.complete`` at the search's input size) a child is its network: the
    parameters a new layer needs are drawn when the child is, and a child whose network a trial of the
    study already has (however its parameters say it) is drawn again, up to MAX_REDRAWS times.

    Each parameter mutates with probability 1 / (number of parameters), or its ``mutation_rates`` entry: a choice
    of another kind than the architecture's many (the searched precision) is otherwise left as the parent had it.

    With ``project``, a child that ``project`` says changed precision is edited further, one ordered architecture
    choice a step at a time: larger while its projected latency stays under FILL_SHARE of the budget, smaller while
    it is over the budget.
    """

    def __init__(self, budget: Budget, seed: int | None = None, n_startup_trials: int = 10,
                 population: int = 20, tournament: int = 5, p_shrink: float = 0.25, near: float = 0.25,
                 guide: Callable[[list[dict[str, Any]]], int] | None = None, guide_children: int = 4,
                 complete: Complete | None = None, mutation_rates: Mapping[str, float] | None = None,
                 project: Project | None = None) -> None:
        self.budget = budget.limit_ms  # a Budget's limit is positive by construction
        self.mutation_rates = dict(mutation_rates or {})
        self.project = project
        self.guide, self.guide_children = guide, guide_children
        self.complete = complete
        self._networks: dict[tuple[tuple[str, str], ...], Hashable] = {}  # a trial's parameters -> its network
        self.n_startup_trials = n_startup_trials
        self.population = population
        self.tournament = tournament
        self.p_shrink = p_shrink
        self.near = near
        self._rng = random.Random(seed)
        self._random = RandomSampler(seed=seed)
        self._plans: dict[int, _Plan] = {}

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ parent and plan
    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)   # read once: the finished ones, and every one for repeats
        history = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        if len(history) < self.n_startup_trials:
            return
        parent = self._select_parent(study, history)
        if parent is None or not parent.params:
            return
        names = sorted(n for n, d in parent.distributions.items()
                       if isinstance(d, (IntDistribution, CategoricalDistribution)))
        if not names:
            return
        p_grow = grow_probability(parent, self.budget)
        seen = {self._network(params) for t in trials if (params := t.params or t.system_attrs.get("fixed_params"))}
        measured = [(t.params, latency(t, self.budget)) for t in history if t.constraints and t.params]
        children = []
        for _ in range(self.guide_children if self.guide else 1):
            for _ in range(MAX_REDRAWS):
                mutate = [n for n in names if self._rng.random() < self.mutation_rates.get(n, 1.0 / len(names))] \
                    or [self._rng.choice(names)]
                changed = self._child(parent.params, {n: self._mutate(parent.params[n], parent.distributions[n],
                                                                      p_grow) for n in mutate})
                if self.project is not None and parent.constraints:
                    changed = self._fill(parent, names, changed, measured)
                network = self._network({**parent.params, **changed})
                if network not in seen:
                    break
            seen.add(network)
            children.append(changed)
        if self.guide and len(children) > 1:
            changed = children[self.guide([{**parent.params, **c} for c in children])]
        self._plans[trial.number] = _Plan(dict(parent.params), dict(parent.distributions), changed)

    def _child(self, params: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
        """The child's changes; with ``complete``, every parameter of the child's network (those of a layer the
        parent lacked drawn here, so that the network known now is the one proposed)."""
        if self.complete is None:
            return changed
        return self.complete({**params, **changed}, self._rng)[1]

    def _fill(self, parent: FrozenTrial, names: list[str], changed: dict[str, Any],
              measured: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
        """A child whose precision changed, grown towards FILL_SHARE of the budget (shrunk when projected over it)
        by one-step edits of its ordered architecture choices; any other child as it was."""
        assert self.project is not None
        parent_ms = latency(parent, self.budget)
        ms = self.project(parent.params, parent_ms, {**parent.params, **changed}, measured)
        ordered = [n for n in names if _steps(parent.distributions[n])]  # widths, kernels, depths (not precision)
        if ms is None or not ordered:
            return changed
        for _ in range(FILL_TRIES):
            grow = ms < FILL_SHARE * self.budget
            if not grow and ms <= self.budget:
                break
            name = self._rng.choice(ordered)
            values = _steps(parent.distributions[name])
            i = values.index(({**parent.params, **changed})[name]) + (1 if grow else -1)
            if not 0 <= i < len(values):
                continue
            edited = self._child(parent.params, {**changed, name: values[i]})
            edited_ms = self.project(parent.params, parent_ms, {**parent.params, **edited}, measured)
            # a larger value is not always a slower net (space-to-depth by 4 is cheaper than by 2): an edit counts
            # only when it moves the projection the way wanted
            if edited_ms is not None and (ms < edited_ms <= FILL_SHARE * self.budget if grow else edited_ms < ms):
                changed, ms = edited, edited_ms
        return changed

    def _network(self, params: dict[str, Any]) -> Hashable:
        """What a repeat is: the network the parameters draw (with ``complete``), else the parameters."""
        key = _key(params)
        if self.complete is None:
            return key
        if key not in self._networks:
            self._networks[key] = self.complete(params, self._rng)[0]
        return self._networks[key]

    def _select_parent(self, study: Study, history: list[FrozenTrial]) -> FrozenTrial | None:
        """Best of a random tournament among the newest feasible trials; sometimes (and always while none
        is feasible) an enqueued trial just over the budget, the least over of them; with neither, the
        trial closest to the budget."""
        feasible = [t for t in history if t.state == TrialState.COMPLETE and t.value is not None
                    and violation(t) == 0]
        near = [t for t in history if "fixed_params" in t.system_attrs
                and 0 < violation(t) <= self.near * self.budget]
        if near and (not feasible or self._rng.random() < self.p_shrink):
            return min(near, key=violation)
        if feasible:
            recent = sorted(feasible, key=lambda t: t.number)[-self.population:]
            contenders = self._rng.sample(recent, min(self.tournament, len(recent)))
            sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
            return max(contenders, key=lambda t: sign * t.value)
        constrained = [t for t in history if t.constraints]
        return min(constrained, key=violation) if constrained else None

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._plans.pop(trial.number, None)

    # ------------------------------------------------------------------ one parameter
    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        plan = self._plans.get(trial.number)
        if plan is not None and param_name in plan.changed and _admits(param_distribution, plan.changed[param_name]):
            return plan.changed[param_name]
        if plan is None or plan.distributions.get(param_name) != param_distribution:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        return plan.params[param_name]

    def _mutate(self, value: Any, dist: IntDistribution | CategoricalDistribution, p_grow: float) -> Any:
        """Ordered choices (integers) move one or two steps, larger with probability ``p_grow``; other
        choices (strings, booleans) change to another at random."""
        direction = 1 if self._rng.random() < p_grow else -1
        steps = 1 if self._rng.random() < 0.75 else 2
        values = _steps(dist)
        if not values:
            others = [c for c in dist.choices if c != value]
            return self._rng.choice(others) if others else value
        i = values.index(value)
        j = i + direction * steps
        if not 0 <= j < len(values):   # at the end of the range: move the other way instead
            j = i - direction * steps
        return values[min(max(j, 0), len(values) - 1)]


def latency(trial: FrozenTrial, budget: float) -> float:
    """A measured trial's latency in ms (its constraint is latency minus the budget; with several targets, the
    largest relative miss in units of the first target's budget)."""
    return budget + sum(trial.constraints.values())


def _steps(dist: BaseDistribution) -> list[Any]:
    """An ordered choice's values, smallest first (widths, kernels, depths); none for other choices."""
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, CategoricalDistribution) and _ordered(dist.choices):
        return sorted(dist.choices)
    return []


def _key(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A hashable form of a trial's parameters, to tell a repeat."""
    return tuple(sorted((name, repr(value)) for name, value in params.items()))


def _admits(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is one of ``dist``'s choices (a planned value is proposed only where it still fits)."""
    if isinstance(dist, IntDistribution):
        return isinstance(value, int) and dist.low <= value <= dist.high
    return isinstance(dist, CategoricalDistribution) and value in dist.choices


def _ordered(choices: tuple[Any, ...]) -> bool:
    """Numeric choices (not booleans) have an order that tracks cost: width, kernel, depth."""
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
