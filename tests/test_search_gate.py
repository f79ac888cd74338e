"""The latency gate: over-budget trials are infeasible for TPE, which then samples the feasible region."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from nas.search.driver import latency_gate
from nas.target import Budget

optuna.logging.set_verbosity(optuna.logging.WARNING)
BUDGET = 0.3
N_TRIALS = 60
N_STARTUP = 10


def run(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Quality grows with x while latency = x: the best feasible point sits on the budget."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(N_TRIALS):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        if latency_gate(study, trial, latency_ms=x, budget=Budget(BUDGET)):
            study.tell(trial, x)
    return study


def feasible_share(study: optuna.Study) -> float:
    after = [t for t in study.trials if t.number >= N_STARTUP]
    return sum(t.params["x"] <= BUDGET for t in after) / len(after)


def test_over_budget_trials_are_pruned_with_a_positive_constraint() -> None:
    study = run(optuna.samplers.RandomSampler(seed=0))
    for t in study.trials:
        over = t.params["x"] > BUDGET
        assert t.state == (TrialState.PRUNED if over else TrialState.COMPLETE)
        assert (t.constraints["latency_ms"] > 0) == over
        assert t.value is None if over else t.value == t.params["x"]
    assert study.best_trial.params["x"] <= BUDGET  # best_trial is feasible only


def test_tpe_ranks_gated_trials_as_infeasible_by_how_far_they_missed() -> None:
    """TPE's split into good/bad groups: every feasible trial first, then the infeasible ones in
    order of their violation. (Private Optuna API: this test exists to catch a change in it.)"""
    # Optuna's private _tpe helpers on purpose (third-party): only they expose TPE's own ranking to check.
    from optuna.samplers._tpe.sampler import _get_infeasible_trial_score, _split_trials

    study = run(optuna.samplers.RandomSampler(seed=0))
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    feasible = [t for t in trials if t.params["x"] <= BUDGET]
    infeasible = sorted((t for t in trials if t.params["x"] > BUDGET), key=lambda t: t.params["x"])
    assert feasible and len(infeasible) > 2
    assert all(_get_infeasible_trial_score(t) == pytest.approx(t.params["x"] - BUDGET) for t in infeasible)
    below, above = _split_trials(study, trials, n_below=len(feasible) + 2)
    below_numbers = {t.number for t in below}
    assert {t.number for t in feasible} | {t.number for t in infeasible[:2]} == below_numbers
    assert {t.number for t in infeasible[2:]} <= {t.number for t in above}


def test_tpe_learns_the_infeasible_region() -> None:
    seeds = range(3)
    tpe = [feasible_share(run(optuna.samplers.TPESampler(seed=s, n_startup_trials=N_STARTUP))) for s in seeds]
    rnd = [feasible_share(run(optuna.samplers.RandomSampler(seed=s))) for s in seeds]
    # Random search lands under the budget ~30 % of the time; TPE, which saw the over-budget
    # trials as infeasible, spends most of its trials under the budget.
    assert sum(tpe) / 3 > sum(rnd) / 3 + 0.15
    assert min(tpe) > 0.45
