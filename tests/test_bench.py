"""`nas bench` end to end: a real tiny bench (ONNX Runtime on this CPU, real short and long training)."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
from tiny import run_nas

pytestmark = pytest.mark.slow  # the module fixture runs two real benches of eight searches each

BUDGETS, SEEDS, SAMPLERS = (0.3, 0.6), (0, 1), ("evolution", "random")  # the default: the search, then random
TRIALS = 5
# 20 short and 40 long training steps (a bench trains 36 nets: at 40 and 80 the fixture took 1.6 times as
# long): the checks below are about what ran, what was cached and how the bench judged and correlated the
# gains it got, not about how large the gains are (at 40 steps as at 20 the tiny reference won every run)
# One finalist per search: the finalists' long training and its shared cache row are what is checked, not K.
BENCH_ARGS = ["--budgets", "0.3,0.6", "--seeds", "0,1", "--trials", str(TRIALS), "--train-steps", "20",
              "--long-steps", "40", "--input-size", "32x48", "--backend", "onnxruntime", "--finalists", "1"]
LONG_STEPS = int(BENCH_ARGS[BENCH_ARGS.index("--long-steps") + 1])
# The second bench: the first one's grid cut to one budget and seed (both samplers), which is what its cache checks need
# (the full grid again took a quarter of the fixture's time, in its searches' verification rounds).
SECOND_GRID = ["--budgets", "0.3", "--seeds", "0"]
REFERENCES = ("espcn", "fsrcnn", "fsrcnn_small", "tiny")  # the warm starts
MODERN = ("ecbsr_m4c8", "ecbsr_m4c16", "abpn", "quicksrnet_s", "quicksrnet_m", "sesr_m5", "sesr_m11", "bicubic_pp")


def run_bench(out: Path, db: str, *extra: str) -> dict:
    proc = run_nas("bench", *BENCH_ARGS, *extra, "--out", str(out), "--latency-db", db, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert json.loads((out / "bench.json").read_text()) == result
    return result


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real tiny bench, and a second one on the same latency database over one cell of its grid (a later
    --budgets/--seeds wins over the first): every search, reference and long training of it is one the first ran."""
    root = tmp_path_factory.mktemp("bench")
    db = f"sqlite:///{root / 'latency.db'}"
    first = run_bench(root / "first", db)
    second = run_bench(root / "second", db, *SECOND_GRID)
    return {"root": root, "first": first, "second": second}


def trials_of(run: dict) -> list[dict[str, str]]:
    with (Path(run["run_dir"]) / "trials.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_every_budget_sampler_and_seed_ran(bench: dict) -> None:
    result = bench["first"]
    runs = {(r["budget_ms"], r["sampler"], r["seed"]): r for r in result["runs"]}
    assert set(runs) == set(itertools.product(BUDGETS, SAMPLERS, SEEDS))
    for (budget, sampler, seed), run in runs.items():
        assert Path(run["run_dir"]) == bench["root"] / "first" / f"{budget:g}ms" / f"{sampler}-seed{seed}"
        rows = trials_of(run)
        assert len(rows) == run["n_trials"] == TRIALS
        assert [r["reference"] for r in rows[:4]] == list(REFERENCES)  # every sampler starts from the references
    assert [t["budget_ms"] for t in result["budgets"]] == list(BUDGETS)
    assert (bench["root"] / "first" / "bench.md").read_text().count("## Budget") == len(BUDGETS)


def test_over_budget_trials_have_zero_training(bench: dict) -> None:
    result = bench["first"]
    n_over = 0
    for run in result["runs"]:
        for r in trials_of(run):
            if r["over_budget"] == "True":
                n_over += 1
                assert float(r["latency_ms"]) > run["budget_ms"]
                assert r["trained"] == "False" and float(r["train_s"] or 0) == 0.0 and r["psnr_gain_db"] == ""
        assert run["gate_ok"] and run["over_budget_train_s"] == 0.0
    assert n_over > 0, "the tiny bench must exercise the gate"
    assert sum(t["over_budget_trials"] for t in result["targets"]) == n_over
    assert all(t["gate_ok"] for t in result["targets"])


def test_references_and_classical_baselines(bench: dict) -> None:
    refs = bench["first"]["references"]
    assert set(refs) == {*REFERENCES, *MODERN, "bicubic", "bilinear"}  # 32x48 tiles every one
    assert bench["first"]["references_left_out"] == {}
    assert {n for n, e in refs.items() if e["kind"] == "modern"} == set(MODERN)
    for name in REFERENCES:
        row = next(r for r in trials_of(bench["first"]["runs"][0]) if r["reference"] == name)
        # the bench reads the row after every run: a later run's close-call or verification visits may have
        # refined it, and more visits can only lower the minimum (cpu-fast-v2 and v3), never raise it
        assert refs[name]["latency_ms"] <= float(row["latency_ms"]) * (1 + 1e-5)
    for name in (*REFERENCES, *MODERN):
        assert set(refs[name]["per_seed"]) == {str(s) for s in SEEDS}
    for seed in map(str, SEEDS):
        assert refs["bicubic"]["per_seed"][seed]["psnr_gain_db"] == 0.0
        bicubic_psnr = refs["tiny"]["per_seed"][seed]["bicubic_psnr_db"]  # the trainer's own bicubic PSNR
        bilinear = refs["bilinear"]["per_seed"][seed]
        assert bilinear["psnr_gain_db"] == pytest.approx(bilinear["psnr_db"] - bicubic_psnr, abs=1e-9)
        assert bilinear["psnr_gain_db"] < 0
    assert refs["bicubic"]["latency_ms"] > 0 and refs["bilinear"]["latency_ms"] > 0


def test_the_best_reference_is_the_best_that_fits(bench: dict) -> None:
    refs = bench["first"]["references"]
    for table in bench["first"]["budgets"]:
        fits = {n: e["gain"]["mean"] for n, e in refs.items() if e["latency_ms"] <= table["budget_ms"]}
        assert table["best_reference"]["name"] == max(fits, key=fits.get)


def test_targets_are_judged_seed_by_seed(bench: dict) -> None:
    result = bench["first"]
    for t in result["targets"]:
        best = {(r["sampler"], r["seed"]): r["best"] for r in result["runs"] if r["budget_ms"] == t["budget_ms"]}
        ref = result["references"][t["reference"]]["per_seed"]
        beating = sum(1 for k in SEEDS if best[("evolution", k)] is not None
                      and best[("evolution", k)]["psnr_gain_db"] > ref[str(k)]["psnr_gain_db"])
        assert t["seeds_beating_reference"] == beating
        assert t["winner_beats_reference"] == (beating == len(SEEDS))
        assert t["sampler"] == "evolution"
        assert sum(t["search_vs_random"].values()) == len(SEEDS)  # bilinear fits every budget: no seed is skipped


def test_spearman_over_the_winners_and_references(bench: dict) -> None:
    from scipy.stats import spearmanr

    result = bench["first"]
    long = result["long"]
    keys = {(n["arch_id"], n["seed"]) for n in long["nets"]}
    judged = 0
    for budget in BUDGETS:  # each budget's winner of the search (not the random control) at its best seed
        mine = [r for r in result["runs"] if r["budget_ms"] == budget and r["sampler"] == "evolution"
                and r["best"] is not None]  # a seed of a tight budget may find nothing on a busy machine
        if mine:
            best = max(mine, key=lambda r: r["best"]["psnr_gain_db"])
            assert (best["best"]["arch_id"], best["seed"]) in keys
            judged += 1
    assert judged, "no budget had a winner to judge after the long training"
    for name in (*REFERENCES, *MODERN):  # every reference net at the first seed
        assert (result["references"][name]["arch_id"], SEEDS[0]) in keys
    assert len(keys) == len(long["nets"]) == long["n_pairs"]
    short = [n["short"]["psnr_gain_db"] for n in long["nets"]]
    longer = [n["long"]["psnr_gain_db"] for n in long["nets"]]
    assert long["spearman"] == pytest.approx(spearmanr(short, longer).statistic, abs=1e-12)
    for n in long["nets"]:  # the short gain is the search's own result for that net and seed
        run = next(r for r in result["runs"] if r["seed"] == n["seed"] and r["sampler"] == "evolution")
        row = next((r for r in trials_of(run) if r["arch_id"] == n["arch_id"] and r["psnr_gain_db"]), None)
        if row is not None:
            assert n["short"]["psnr_gain_db"] == pytest.approx(float(row["psnr_gain_db"]), rel=1e-5)


def test_the_winners_are_judged_after_the_long_training_too(bench: dict) -> None:
    """Issue #25: each seed's winner and the best fitting reference are compared again after the long training; the
    searches' finalists train the long steps, so a finalist winner's long gain is its final gain (one cached row)."""
    result = bench["first"]
    judged = result["long"]["judged"]
    assert {(j["budget_ms"], j["seed"]) for j in judged} == set(itertools.product(BUDGETS, SEEDS))
    for t in result["targets"]:
        mine = [j for j in judged if j["budget_ms"] == t["budget_ms"]]
        beating = sum(1 for j in mine if j["winner_long_gain_db"] is not None and (
            j["reference_long_gain_db"] is None or j["winner_long_gain_db"] > j["reference_long_gain_db"]))
        assert t["seeds_beating_reference_long"] == beating
        assert t["winner_beats_reference_long"] == (beating == len(SEEDS))
    for run in result["runs"]:
        best = run["best"]
        if best is None or best["final_psnr_gain_db"] is None:
            continue
        assert best["final_steps"] == LONG_STEPS
        if run["sampler"] == "evolution":
            j = next(j for j in judged if (j["budget_ms"], j["seed"]) == (run["budget_ms"], run["seed"]))
            assert j["winner_long_gain_db"] == pytest.approx(best["final_psnr_gain_db"], abs=1e-9)
    assert "after the long training" in (bench["root"] / "first" / "bench.md").read_text()


def test_spearman_with_ties_and_degenerate_input() -> None:
    from scipy.stats import spearmanr

    from nas.bench import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    tied = ([1, 2, 2, 3, 5], [2, 1, 4, 3, 5])  # ties get their average rank, as in scipy
    assert spearman(*tied) == pytest.approx(spearmanr(*tied).statistic, abs=1e-12)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_a_second_bench_within_the_first_ones_grid_measures_and_trains_nothing(bench: dict) -> None:
    first, second = bench["first"], bench["second"]
    assert first["new_latency_rows"] > 0 and first["new_trainings"] > 0
    assert second["new_latency_rows"] == 0 and second["new_trainings"] == 0
    assert {(r["budget_ms"], r["sampler"], r["seed"]) for r in second["runs"]} == \
        {(0.3, sampler, 0) for sampler in SAMPLERS}
    for r in second["runs"]:  # no new row; a visit only to a stored row left unsettled that is now a close call
        # (issue #24: a close call is timed again before the gate decides; how near the budget a tiny net's row
        # lands depends on the machine's moment, so whether one is left is not fixed)
        this_run = json.loads((Path(r["run_dir"]) / "run.json").read_text())["summary"]["this_run"]
        assert r["n_measured"] <= this_run["close_calls_retimed"], this_run
    assert all(e["latency_cached"] for e in second["references"].values())
    # the same winners; only their latency may drop: each search re-times its finalists before naming the winner
    # (cpu-fast-v4 visits, issue #24), and more visits can only lower the minimum
    earlier = {(r["budget_ms"], r["sampler"], r["seed"]): r for r in first["runs"]}
    for b in second["runs"]:
        a = earlier[(b["budget_ms"], b["sampler"], b["seed"])]
        assert {k: v for k, v in (b["best"] or {}).items() if k != "latency_ms"} == \
            {k: v for k, v in (a["best"] or {}).items() if k != "latency_ms"}
        assert (b["best"] or {}).get("latency_ms", 0) <= (a["best"] or {}).get("latency_ms", 0) * (1 + 1e-9)
    # the long trainings are the first bench's rows: every reference at seed 0 again, with the same gains
    gains = [{(n["arch_id"], n["seed"]): n["long"]["psnr_gain_db"] for n in b["long"]["nets"]} for b in (first, second)]
    common = gains[0].keys() & gains[1].keys()
    assert {(second["references"][name]["arch_id"], SEEDS[0]) for name in (*REFERENCES, *MODERN)} <= common
    assert all(gains[0][k] == gains[1][k] for k in common)


@pytest.mark.parametrize("args", [["--budgets", "abc"], ["--seeds", ""], ["--budgets", "2,-1"],
                                  ["--seeds", "0,0"], ["--long-steps", "0"], ["--task", "denoise"],
                                  ["--samplers", "evolution"], ["--samplers", "random,evolution"],
                                  ["--samplers", "annealing,random"], ["--samplers", "tpe,random,tpe"],
                                  ["--reparam", "acb"], ["--finalists", "-1"], ["--final-steps", "0"]])
def test_bad_input_is_one_line_exit_2(args: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_nas("bench", *args, "--out", str(out), "--latency-db", f"sqlite:///{tmp_path / 'l.db'}")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
    assert not out.exists()


def test_reparam_reaches_every_search_and_reference_training(tmp_path: Path) -> None:
    """--reparam sets the training config of the searches and the references alike (one cache key each)."""
    from nas.bench import Bench, BenchConfig

    bench = Bench(BenchConfig(budgets=(1.0,), seeds=(0, 1), reparam="ecb", backend="onnxruntime",
                              input_size=(32, 48), out=str(tmp_path / "out"), latency_db=str(tmp_path / "l.db")))
    configs = {bench.target(1.0, seed).train_config for seed in (0, 1)} | {bench._config_for(s) for s in (0, 1)}
    assert {c.reparam for c in configs} == {"ecb"} and len(configs) == 2


def test_references_that_cannot_tile_the_input_are_left_out_with_the_reason(tmp_path: Path) -> None:
    """At the CPU default 135x240 (odd height) Bicubic++'s strided entry cannot run; the bench says so."""
    from nas.bench import Bench, BenchConfig

    bench = Bench(BenchConfig(budgets=(1.0,), seeds=(0,), backend="onnxruntime", input_size=(135, 240),
                              out=str(tmp_path / "out"), latency_db=str(tmp_path / "l.db")))
    target = bench.target(1.0, 0)
    nets, left_out = target.space.fitting_references(target.input_size)
    assert set(left_out) == {"bicubic_pp"} and "not a multiple of 2" in left_out["bicubic_pp"]
    assert set(nets) == {*REFERENCES, *MODERN} - {"bicubic_pp"}
