"""EvolutionSampler: seeded, edits good trials a parameter or two at a time, and grows or shrinks them
toward the budget. A stand-in cost (MACs of the real sr2x space) replaces measuring, so that many
seeds run in seconds; the real comparison against random search is `nas bench` (reports/bench.md)."""

from __future__ import annotations

import math
import random
import statistics

import optuna
import pytest
from optuna.trial import TrialState

from nas.errors import UsageError
from nas.search.driver import latency_gate
from nas.search.samplers import EvolutionSampler, grow_probability
from nas.target import Budget
from search_spaces import count, get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = get_space("sr2x")
SIZE = (135, 240)
MACS_PER_MS = 1e8   # the stand-in device: 100 M multiply-adds per millisecond
N_TRIALS = 50
REFERENCES = SPACE.fitting_references(SIZE)[0]  # every reference that tiles the input, as nas enqueues them


def run(sampler: optuna.samplers.BaseSampler, budget: float, n_trials: int = N_TRIALS) -> optuna.Study:
    """A search as nas runs it (references enqueued first, the latency gate), with latency = MACs /
    MACS_PER_MS and quality = log(parameters): more capacity is better, until the budget stops it."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for spec in SPACE.references().values():
        study.enqueue_trial(SPACE.params_of(spec))
    for _ in range(n_trials):
        trial = study.ask()
        counts = count(SPACE.sample(trial, SIZE), *SIZE)
        if latency_gate(study, trial, counts.macs / MACS_PER_MS, Budget(budget)):
            study.tell(trial, math.log(counts.params))
    return study


def best(study: optuna.Study) -> float:
    return max((t.value for t in study.trials if t.state == TrialState.COMPLETE), default=0.0)


def test_same_seed_same_trials() -> None:
    first, second = (run(EvolutionSampler(Budget(2.0), seed=7), 2.0, n_trials=30) for _ in range(2))
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.params for t in first.trials] != [t.params for t in run(EvolutionSampler(Budget(2.0), seed=8), 2.0,
                                                                      n_trials=30).trials]


def edit_distance(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> int:
    """Parameters in which two trials differ (a changed value counts 2: old and new)."""
    return len(set(a.params.items()) ^ set(b.params.items()))


def test_children_are_small_edits_of_earlier_trials() -> None:
    """After the start-up, each trial differs from some earlier trial in few parameters."""
    study = run(EvolutionSampler(Budget(2.0), seed=0, n_startup_trials=10), 2.0, n_trials=40)
    trials = study.trials
    edits = [min(edit_distance(t, p) for p in trials[:t.number]) for t in trials[10:]]
    assert statistics.median(edits) <= 4   # one changed value shows as 2 (old and new); a new layer adds 2-3
    assert sum(e == 0 for e in edits) < len(edits) / 4   # mostly new candidates, not repeats


def test_a_reference_just_over_the_budget_is_shrunk_into_it() -> None:
    """FSRCNN-small 3 % over the budget: a one- or two-value edit of it lands under the budget."""
    fsrcnn_small = SPACE.references()["fsrcnn_small"]
    budget = 0.97 * count(fsrcnn_small, *SIZE).macs / MACS_PER_MS
    for seed in range(3):
        study = run(EvolutionSampler(Budget(budget), seed=seed), budget)
        reference = study.trials[list(SPACE.references()).index("fsrcnn_small")]  # enqueued in this order
        assert reference.state == TrialState.PRUNED
        assert any(t.state == TrialState.COMPLETE and edit_distance(t, reference) <= 4 for t in study.trials)


def test_grow_probability_follows_the_spare_latency() -> None:
    def trial_at(latency: float, budget: float = 4.0) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(value=None if latency > budget else 1.0,
                                         state=TrialState.PRUNED if latency > budget else TrialState.COMPLETE,
                                         constraints={"latency_ms": latency - budget})

    half, edge, over = (grow_probability(trial_at(x), 4.0) for x in (2.0, 4.0, 8.0))
    assert half > edge > over
    assert edge == pytest.approx(0.5)
    assert grow_probability(trial_at(0.01), 4.0) == pytest.approx(0.9)  # capped: always some shrinking
    assert grow_probability(trial_at(40.0), 4.0) == pytest.approx(0.1)


@pytest.mark.parametrize("budget", [1.0, 4.0])
def test_beats_random_search_at_equal_trials(budget: float) -> None:
    """Mean best over seeds above random search's, and more trials under the budget."""
    seeds = range(4)
    evo = [run(EvolutionSampler(Budget(budget), seed=s), budget) for s in seeds]
    rnd = [run(optuna.samplers.RandomSampler(seed=s), budget) for s in seeds]
    assert statistics.fmean(map(best, evo)) > statistics.fmean(map(best, rnd))

    def n_feasible(study: optuna.Study) -> int:
        return sum(t.state == TrialState.COMPLETE for t in study.trials)

    assert statistics.fmean(map(n_feasible, evo)) > 1.5 * statistics.fmean(map(n_feasible, rnd))


def test_a_sampler_cannot_be_given_a_non_positive_budget() -> None:
    """The sampler takes a Budget, which refuses a limit that would make its scale meaningless."""
    with pytest.raises(UsageError, match="--budget-ms must be a positive"):
        EvolutionSampler(Budget(0.0))


def test_a_guide_keeps_the_child_predicted_closest_under_the_budget() -> None:
    """``--predictor guide`` with a perfect predictor (the stand-in cost itself): of the children drawn
    per trial, the one kept is the costliest under the budget, so more trials fit than unguided."""
    import random

    budget, calls = 2.0, []

    def cost(params: dict) -> float:
        return count(SPACE.complete(params, random.Random(0), SIZE)[0], *SIZE).macs / MACS_PER_MS

    def guide(children: list[dict]) -> int:
        ms = [cost(c) for c in children]
        calls.append(ms)
        under = [i for i, v in enumerate(ms) if v <= budget]
        return max(under, key=lambda i: ms[i]) if under else min(range(len(ms)), key=lambda i: ms[i])

    def feasible(study: optuna.Study) -> int:
        return sum(t.state == TrialState.COMPLETE for t in study.trials[14:])

    guided = [run(EvolutionSampler(Budget(budget), seed=s, guide=guide), budget) for s in range(3)]
    plain = [run(EvolutionSampler(Budget(budget), seed=s), budget) for s in range(3)]
    assert calls and all(len(c) == 4 for c in calls)
    assert sum(map(feasible, guided)) > sum(map(feasible, plain))


def run_over_precisions(sampler: EvolutionSampler, budget: float, n_trials: int = 40) -> optuna.Study:
    """``run`` with precision searched as nas searches it: the references enqueued in fp32, int8 at half the
    stand-in latency and a slightly lower quality."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for spec in REFERENCES.values():  # eleven: the start-up trials are all references, as in nas
        study.enqueue_trial({**SPACE.params_of(spec), "precision": "fp32"})
    for _ in range(n_trials):
        trial = study.ask()
        counts = count(SPACE.sample(trial, SIZE), *SIZE)
        int8 = trial.suggest_categorical("precision", ["fp32", "int8"]) == "int8"
        if latency_gate(study, trial, counts.macs / MACS_PER_MS * (0.5 if int8 else 1.0), Budget(budget)):
            study.tell(trial, math.log(counts.params) - (0.05 if int8 else 0.0))
    return study


def test_a_searched_precision_mutates_at_its_own_rate() -> None:
    """Precision is one of many parameters: at the default rate the evolution seldom leaves the references' fp32 (an
    8 ms bench drew no int8 child in 24 trials on either seed); at the precision's own rate it tries int8 within
    its first few children on every seed, and twice as often."""
    from nas.search.precision import PARAM, PRECISION_MUTATION_RATE

    budget, share, first = 2.0, {}, {}
    for rates in ({}, {PARAM: PRECISION_MUTATION_RATE}):
        studies = [run_over_precisions(EvolutionSampler(Budget(budget), seed=s, mutation_rates=rates), budget)
                   for s in range(4)]
        children = [study.trials[len(REFERENCES):] for study in studies]
        share[bool(rates)] = statistics.mean(t.params["precision"] == "int8" for c in children for t in c)
        first[bool(rates)] = [next((i for i, t in enumerate(c) if t.params["precision"] == "int8"), len(c))
                              for c in children]
    assert max(first[True]) < 5 < max(first[False])
    assert share[True] > 2 * share[False]


def test_a_child_switched_to_int8_grows_into_the_latency_it_frees() -> None:
    """int8 halves the stand-in latency: with the switch's projection a child switched from fp32 is grown towards
    the budget in the same trial, so the int8 nets trained use more of it and the best of them is better, with no
    more trials lost over the budget."""
    from nas.search.precision import PARAM, PRECISION_MUTATION_RATE, SwitchProjection
    from nas.search.samplers import latency

    budget, seeds = 2.0, range(4)
    share, best_int8, over = {}, {}, {}
    for grown in (False, True):
        studies = [run_over_precisions(EvolutionSampler(
            Budget(budget), seed=s, mutation_rates={PARAM: PRECISION_MUTATION_RATE},
            project=SwitchProjection(SPACE, SIZE) if grown else None), budget) for s in seeds]
        int8 = [[t for t in study.trials[len(REFERENCES):] if t.params["precision"] == "int8"
                 and t.state == TrialState.COMPLETE] for study in studies]
        share[grown] = statistics.mean(statistics.median(latency(t, budget) / budget for t in c) for c in int8)
        best_int8[grown] = statistics.mean(max(t.value for t in c) for c in int8)
        over[grown] = sum(t.state == TrialState.PRUNED for study in studies for t in study.trials)
    assert share[True] > share[False] + 0.1
    assert best_int8[True] > best_int8[False]
    assert over[True] <= over[False]


def test_the_switch_projection_learns_each_precision_from_the_study() -> None:
    """Before the study measured both precisions the projection uses the prior speed-ups; after, the study's own:
    the same net switched to int8 at the stand-in's exact ratio, and a net twice the MACs projected twice as slow
    (the stand-in's latency is linear in MACs)."""
    import random

    from nas.search.precision import MIN_MEASURED, PRIOR_SPEED, SwitchProjection

    project = SwitchProjection(SPACE, SIZE)
    rng = random.Random(0)
    nets = [SPACE.params_of(SPACE.random_spec(rng, SIZE)) for _ in range(2 * MIN_MEASURED)]
    ms = [project.macs(p) / MACS_PER_MS for p in nets]
    fp32, int8 = {**nets[0], "precision": "fp32"}, {**nets[0], "precision": "int8"}
    assert project(fp32, ms[0], fp32, []) is None   # no switch, no projection
    assert project(fp32, ms[0], int8, []) == pytest.approx(ms[0] * PRIOR_SPEED["int8"])
    measured = [({**p, "precision": "fp32" if i < MIN_MEASURED else "int8"}, m if i < MIN_MEASURED else 0.25 * m)
                for i, (p, m) in enumerate(zip(nets, ms, strict=True))]
    assert project(fp32, ms[0], int8, measured) == pytest.approx(0.25 * ms[0], rel=1e-6)
    assert project(int8, 0.25 * ms[0], fp32, measured) == pytest.approx(ms[0], rel=1e-6)
    assert project.macs(nets[1]) != project.macs(nets[0])
    assert project(fp32, ms[0], {**nets[1], "precision": "int8"}, measured) == \
        pytest.approx(0.25 * ms[1], rel=1e-6)


def test_a_switched_child_grows_only_by_edits_that_make_it_slower() -> None:
    """Only the precision mutates (rate 1, every other 0): without the projection the int8 child is its parent's net;
    with it, from every reference and several seeds, the child has more MACs than its parent (a larger choice is not
    always a slower net: space-to-depth by 2 can be cheaper than by 1, and no such edit may count as growth) and is
    projected within the fill share of the budget. At 136x240, where space-to-depth by 2 tiles the input."""
    from nas.search.precision import PARAM, SwitchProjection
    from nas.search.samplers import FILL_SHARE

    budget, parent_ms, size = 2.0, 1.0, (136, 240)
    project = SwitchProjection(SPACE, size)

    def complete(params: dict, rng: random.Random) -> tuple:  # as PrecisionPlan.complete gives nas's evolution
        spec, drawn = SPACE.complete({k: v for k, v in params.items() if k != PARAM}, rng, size)
        return (spec, params.get(PARAM, "fp32")), {**drawn, PARAM: params.get(PARAM, "fp32")}

    for name, reference in SPACE.fitting_references(size)[0].items():
        params = {**SPACE.params_of(reference), PARAM: "fp32"}
        for seed, grown in [(0, False)] + [(s, True) for s in range(5)]:
            rates = {p: 0.0 for p in params} | {PARAM: 1.0}
            sampler = EvolutionSampler(Budget(budget), seed=seed, n_startup_trials=1, mutation_rates=rates,
                                       complete=complete, project=project if grown else None)
            study = optuna.create_study(direction="maximize", sampler=sampler)
            study.enqueue_trial(params)
            trial = study.ask()
            SPACE.sample(trial, size)
            trial.suggest_categorical(PARAM, ["fp32", "int8"])
            assert latency_gate(study, trial, parent_ms, Budget(budget))
            study.tell(trial, 1.0)
            child = study.ask()
            spec = SPACE.sample(child, size)
            assert child.suggest_categorical(PARAM, ["fp32", "int8"]) == "int8"
            if not grown:
                assert spec.arch_id == reference.arch_id, name
                continue
            assert count(spec, *size).macs > count(reference, *size).macs, (name, seed)
            assert project(params, parent_ms, child.params, []) <= FILL_SHARE * budget, (name, seed)
