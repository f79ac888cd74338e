"""Multi-fidelity training: rungs in short_train, the pruners, and rung-pruned trials in the run dir."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from tiny import TINY_ARGS, run_nas

from nas.data import TaskData, load_data
from nas.errors import UsageError
from nas.rundir import RunDir, RunDirWriter, TrialRow, best_trial, summarize
from nas.search import PRUNERS, SearchConfig
from nas.train import TrainConfig, short_train
from nas.train_cache import TABLE, TrainCache
from search_spaces import get_space

CFG = TrainConfig(steps=6, batch_size=4, patch_size=16, lr=5e-3, warmup_steps=2)


@pytest.fixture(scope="module")
def sr2() -> TaskData:
    return load_data("sr", 2, 32)


def test_rungs_never_change_a_full_training(sr2: TaskData) -> None:
    """Validating at the rungs draws no random numbers: the weights and the gain are those of a plain training."""
    spec = get_space("sr2x").references()["tiny"]
    plain = short_train(spec, sr2, CFG)
    seen: list[int] = []
    laddered = short_train(spec, sr2, CFG, rungs=(2, 4, 6), on_rung=lambda step, gain: seen.append(step) or False)
    assert seen == [2, 4]  # a rung at the last step is the final validation, not a rung
    assert [s for s, _ in laddered.val_curve] == [2, 4, 6] and laddered.stopped_at is None
    assert laddered.psnr_gain_db == plain.psnr_gain_db
    assert all(torch.equal(plain.state_dict[k], laddered.state_dict[k]) for k in plain.state_dict)


def test_a_rung_stops_the_training_with_the_rungs_gain(sr2: TaskData) -> None:
    spec = get_space("sr2x").references()["tiny"]
    stopped = short_train(spec, sr2, CFG, rungs=(2, 4), on_rung=lambda step, gain: step >= 4)
    assert stopped.stopped_at == 4
    assert [s for s, _ in stopped.val_curve] == [2, 4]
    assert stopped.val_curve[-1][1] == pytest.approx(stopped.psnr_gain_db, abs=1e-9)
    assert math.isnan(stopped.shift_consistency_db)
    assert set(stopped.state_dict) == set(short_train(spec, sr2, CFG).state_dict)


@pytest.mark.parametrize("name", PRUNERS.names())
def test_every_pruner_reports_below_the_full_training(name: str) -> None:
    pruning = PRUNERS.get(name)(500)
    assert all(0 < r < 500 for r in pruning.rungs) and list(pruning.rungs) == sorted(set(pruning.rungs))
    assert (name == "none") == (pruning.rungs == ())


def test_an_unknown_pruner_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--pruner must be one of"):
        SearchConfig(pruner="asha")


def test_a_stopped_trial_never_wins_and_round_trips_trials_csv(tmp_path: Path) -> None:
    full = TrialRow(number=0, state="COMPLETE", arch_id="a", latency_ms=1.0, trained=True, psnr_gain_db=0.2)
    stopped = TrialRow(number=1, state="PRUNED", arch_id="b", latency_ms=0.5, trained=True, stopped_at=100,
                       psnr_gain_db=0.9)
    stateless = TrialRow(number=2, arch_id="c", latency_ms=0.5, trained=True, stopped_at=100, psnr_gain_db=0.9)
    assert not stopped.feasible and not stateless.feasible
    assert best_trial([full, stopped, stateless]) == full
    assert summarize([full, stopped, stateless])["n_stopped"] == 2
    writer = RunDirWriter(tmp_path)
    writer.create()
    writer.write_run_json({"study": "s"})
    writer.write_trials([full, stopped])
    assert RunDir.load(tmp_path).trials == [full, stopped]


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trials.csv").open() as fh:
        return list(csv.DictReader(fh))


def _search(tiny_search: dict, tmp_path: Path, name: str, pruner: str, *extra: str) -> tuple[Path, dict, str]:
    """The session's tiny search again with ``--pruner``, from a copy of its database with its latencies but
    no trainings (a cached full training is never stopped: there is nothing left to save)."""
    db = tmp_path / f"{name}.db"
    shutil.copy(tiny_search["root"] / "latency.db", db)
    with sqlite3.connect(db) as conn:
        conn.execute(f"DELETE FROM {TABLE}")
    run_dir = tmp_path / name
    proc = run_nas("search", *TINY_ARGS, "--pruner", pruner, "--run-dir", str(run_dir), "--latency-db", str(db),
                   "--json", "--no-report", "--no-export", *extra)
    assert proc.returncode == 0, proc.stderr
    return run_dir, json.loads(proc.stdout), str(db)


def _check_stopped_trials(run_dir: Path, summary: dict, db: str) -> list[dict[str, str]]:
    """Every rung-pruned trial: PRUNED, within the budget, its latency and rung gain kept, no error, not
    in the training cache; the winner trained in full."""
    rows = _rows(run_dir)
    stopped = [r for r in rows if r["stopped_at"]]
    run = json.loads((run_dir / "run.json").read_text())
    steps, rungs = run["train_config"]["steps"], run["config"]["rungs"]
    cache = TrainCache(db)
    for r in stopped:
        assert r["state"] == "PRUNED" and r["over_budget"] == "False" and r["trained"] == "True"
        assert r["latency_ms"] and r["psnr_gain_db"] and r["error"] == ""
        assert int(r["stopped_at"]) in rungs
        train = json.loads((run_dir / "archs" / r["arch_id"] / "train.json").read_text())
        assert train["stopped_at"] == int(r["stopped_at"]) == train["val_curve"][-1][0]
        assert cache.get(r["arch_id"], train["train_config_hash"], run["data"]["data_id"]) is None
    assert summary["n_stopped"] == len(stopped)
    best = summary["best"]
    winner = next(r for r in rows if int(r["number"]) == best["trial"])
    assert winner["state"] == "COMPLETE" and winner["stopped_at"] == ""
    train = json.loads((run_dir / "archs" / best["arch_id"] / "train.json").read_text())
    assert train["stopped_at"] is None and train["val_curve"][-1][0] == steps
    return stopped


def test_sha_stops_losing_trainings_deterministically(tiny_search: dict, tmp_path: Path) -> None:
    """Two runs from the same database and seed stop the same trials at the same rungs."""
    a_dir, a, a_db = _search(tiny_search, tmp_path, "a", "sha")
    b_dir, _, _ = _search(tiny_search, tmp_path, "b", "sha")
    assert _check_stopped_trials(a_dir, a, a_db)  # the tiny search has losers to stop
    key = [(r["number"], r["state"], r["arch_id"], r["stopped_at"]) for r in _rows(a_dir)]
    assert key == [(r["number"], r["state"], r["arch_id"], r["stopped_at"]) for r in _rows(b_dir)]


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_sha_works_with_every_sampler_on_a_journal(tiny_search: dict, tmp_path: Path, sampler: str) -> None:
    journal = f"journal:{tmp_path / 'shared.journal'}"
    run_dir, summary, db = _search(tiny_search, tmp_path, sampler, "sha", "--sampler", sampler, "--storage", journal,
                                       "--study", f"sha-{sampler}")
    _check_stopped_trials(run_dir, summary, db)



def test_hyperband_runs_the_search_with_its_rungs(tiny_search: dict, tmp_path: Path) -> None:
    run_dir, summary, db = _search(tiny_search, tmp_path, "hb", "hyperband")
    run = json.loads((run_dir / "run.json").read_text())
    assert run["config"]["pruner"] == "hyperband" and run["config"]["rungs"] == [30, 90]  # 150 steps
    _check_stopped_trials(run_dir, summary, db)


def test_a_stopped_trial_of_another_worker_is_not_missing_weights(tmp_path: Path) -> None:
    """materialize looks for full trainings in the training cache only: a trial stopped at a rung is not one."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from nas.shared_study import materialize
    from nas.target import Budget

    spec = get_space("sr2x").references()["tiny"]
    attrs = {"arch_id": spec.arch_id, "spec": spec.canonical_json(), "latency": {"median_ms": 0.3},
             "train": {"psnr_gain_db": 0.1}}
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("identity", {"train_config": "h" * 64, "data": "d" * 64})
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={**attrs, "pruned_at_step": 30},
                                 intermediate_values={30: 0.1}))
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.2, user_attrs=attrs))
    writer = RunDirWriter(tmp_path)
    writer.create()
    done = materialize(study, writer, TrainCache(str(tmp_path / "nas.db")), Budget(1.0))
    assert done.missing_weights == [1]
    assert [r.stopped_at for r in done.rows] == [30, None]
