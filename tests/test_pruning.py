"""Multi-fidelity training: rungs in short_train, the pruners, and rung-pruned trials in the run dir."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from pathlib import Path

import pytest
import torch
from tiny import NO_FINALISTS, TINY_ARGS, copy_as_gated, run_nas

from latency_db import get_backend
from nas.errors import UsageError
from nas.rundir import RunDir, RunDirWriter, TrialRow, best_trial, summarize
from nas.search.config import PRUNERS, SearchConfig
from nas.training.data import TaskData, load_data
from nas.training.train import TrainConfig, TrainResult, short_train
from nas.training.train_cache import PARTIAL_TABLE, TABLE, TrainCache
from search_spaces import get_space

CFG = TrainConfig(steps=6, batch_size=4, patch_size=16, lr=5e-3, warmup_steps=2)
# The searches here are the tiny search with 50 training steps instead of 150 (a third of the training time):
# rungs at 10 and 20 (sha; 10 and 30 hyperband), where the losers are already far behind (Bicubic++ near
# -12 dB), so the pruner still stops trainings. What these tests check is the rungs and the verdicts, not
# how good the winner is; below 50 steps the fixed cost of a training (its validations) dominates.
STEPS = 50
_STEPS_AT = TINY_ARGS.index("--train-steps") + 1
PRUNING_ARGS = [*TINY_ARGS[:_STEPS_AT], str(STEPS), *TINY_ARGS[_STEPS_AT + 1:], *NO_FINALISTS]


@pytest.fixture(scope="module")
def sr2() -> TaskData:
    return load_data("sr", 2, 32)


@pytest.fixture(scope="module")
def plain(sr2: TaskData) -> TrainResult:
    """The tiny reference trained with CFG without rungs, once for every test that compares against it
    (it only reads the weights)."""
    return short_train(get_space("sr2x").references()["tiny"], sr2, CFG)


def test_rungs_never_change_a_full_training(sr2: TaskData, plain: TrainResult) -> None:
    """Validating at the rungs draws no random numbers: the weights and the gain are those of a plain training."""
    spec = get_space("sr2x").references()["tiny"]
    seen: list[int] = []
    laddered = short_train(spec, sr2, CFG, rungs=(2, 4, 6), on_rung=lambda step, gain: seen.append(step) or False)
    assert seen == [2, 4]  # a rung at the last step is the final validation, not a rung
    assert [s for s, _ in laddered.val_curve] == [2, 4, 6] and laddered.stopped_at is None
    assert laddered.psnr_gain_db == plain.psnr_gain_db
    assert all(torch.equal(plain.state_dict[k], laddered.state_dict[k]) for k in plain.state_dict)


def test_a_rung_stops_the_training_with_the_rungs_gain(sr2: TaskData, plain: TrainResult) -> None:
    spec = get_space("sr2x").references()["tiny"]
    stopped = short_train(spec, sr2, CFG, rungs=(2, 4), on_rung=lambda step, gain: step >= 4)
    assert stopped.stopped_at == 4
    assert [s for s, _ in stopped.val_curve] == [2, 4]
    assert stopped.val_curve[-1][1] == pytest.approx(stopped.psnr_gain_db, abs=1e-9)
    assert math.isnan(stopped.shift_consistency_db)
    assert set(stopped.state_dict) == set(plain.state_dict)


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


def _search(tiny_search: dict, tmp_path: Path, name: str, pruner: str, *extra: str,
            latencies_of: tuple[Path, Path] | None = None) -> tuple[Path, dict, str]:
    """The session's tiny search again with ``--pruner`` and STEPS training steps, from a copy of its
    database (or of ``latencies_of``: a database and the run dir of the search that wrote it) with its latencies as
    that search's gates read them (tests/tiny.py) but no trainings and no checkpoints (a cached full training is
    never stopped: there is nothing left to save)."""
    source_db, source_run = latencies_of or (tiny_search["root"] / "latency.db", tiny_search["run_dir"])
    db = Path(copy_as_gated(source_db, source_run, tmp_path / f"{name}.db"))
    with sqlite3.connect(db) as conn:
        conn.execute(f"DELETE FROM {TABLE}")
        conn.execute(f"DELETE FROM {PARTIAL_TABLE}")
    run_dir = tmp_path / name
    proc = run_nas("search", *PRUNING_ARGS, "--pruner", pruner, "--run-dir", str(run_dir), "--latency-db",
                   str(db), "--json", "--no-report", "--no-export", *extra)
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
        checkpoint = cache.get_partial(r["arch_id"], train["train_config_hash"], run["data"]["data_id"])
        assert checkpoint is not None and checkpoint.step >= int(r["stopped_at"])  # met again, it resumes
    assert summary["n_stopped"] == len(stopped)
    best = summary["best"]
    winner = next(r for r in rows if int(r["number"]) == best["trial"])
    assert winner["state"] == "COMPLETE" and winner["stopped_at"] == ""
    train = json.loads((run_dir / "archs" / best["arch_id"] / "train.json").read_text())
    assert train["stopped_at"] is None and train["val_curve"][-1][0] == steps
    return stopped


@pytest.fixture(scope="module")
def sha_search(tiny_search: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """One search with --pruner sha from no trainings (run dir, summary, database), the first run of both
    the determinism and the resume test: they copy its database, never write to it."""
    return _search(tiny_search, tmp_path_factory.mktemp("sha"), "a", "sha")


def test_sha_stops_losing_trainings_deterministically(tiny_search: dict, sha_search: tuple[Path, dict, str],
                                                      tmp_path: Path) -> None:
    """Two runs from the same latencies and seed stop the same trials at the same rungs (the second one
    gets the first one's latencies as its gates read them: an evolution child the session's search never met is
    measured by the first, and a second measurement could fall on the other side of the budget)."""
    a_dir, a, a_db = sha_search
    b_dir, _, _ = _search(tiny_search, tmp_path, "b", "sha", latencies_of=(Path(a_db), a_dir))
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
    assert run["config"]["pruner"] == "hyperband" and run["config"]["rungs"] == [10, 30]  # STEPS = 50
    _check_stopped_trials(run_dir, summary, db)


def test_a_stopped_trial_of_another_worker_is_not_missing_weights(tmp_path: Path) -> None:
    """materialize looks for full trainings in the training cache only: a trial stopped at a rung is not one."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from nas.search.shared_study import materialize
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


RESUMABLE = [("sr2x", "tiny", "none"), ("sr2x", "tiny", "ecb"), ("denoise", "unet_small", "none")]


@pytest.mark.parametrize(("task", "ref", "reparam"), RESUMABLE)
def test_a_resumed_training_is_bit_identical_to_an_uninterrupted_one(task: str, ref: str, reparam: str,
                                                                     tmp_path: Path) -> None:
    """Stopped at a rung, stored, read back and resumed: the weights, curves and gain are exactly those of
    one training that never stopped (the checkpoint carries Adam's state, the schedule and the random streams;
    denoise draws its noise from the sampler's stream)."""
    space = get_space(task)
    spec = space.references()[ref]
    data = load_data(space.kind, space.scale, 32)
    cfg = TrainConfig(**{**CFG.to_dict(), "steps": 12, "reparam": reparam})
    straight = short_train(spec, data, cfg)
    stopped = short_train(spec, data, cfg, rungs=(4, 8), on_rung=lambda step, gain: step == 8)
    assert stopped.stopped_at == 8 and stopped.checkpoint is not None and stopped.checkpoint.step == 8
    cache = TrainCache(str(tmp_path / "cache.db"))
    key = (spec.arch_id, cfg.hash(), data.data_id)
    cache.put_partial(*key, stopped.checkpoint)
    seen: list[int] = []
    resumed = short_train(spec, data, cfg, rungs=(4, 8), on_rung=lambda step, gain: seen.append(step) or False,
                          resume=cache.get_partial(*key))
    assert seen == [4, 8]  # the passed rungs, reported again from their stored gains
    assert resumed.resumed_from == 8 and resumed.stopped_at is None and resumed.checkpoint is None
    assert 0 < resumed.resumed_s <= resumed.train_s
    assert set(resumed.state_dict) == set(straight.state_dict)
    assert all(torch.equal(straight.state_dict[k], resumed.state_dict[k]) for k in straight.state_dict)
    assert resumed.loss_curve == straight.loss_curve and resumed.val_curve[-1] == straight.val_curve[-1]
    assert resumed.psnr_gain_db == straight.psnr_gain_db


def test_a_resumed_training_can_be_stopped_before_any_step(sr2: TaskData) -> None:
    spec = get_space("sr2x").references()["tiny"]
    stopped = short_train(spec, sr2, CFG, rungs=(2, 4), on_rung=lambda step, gain: step == 4)
    again = short_train(spec, sr2, CFG, rungs=(2, 4), on_rung=lambda step, gain: True, resume=stopped.checkpoint)
    assert again.stopped_at == 2 and again.resumed_from == 4 and again.checkpoint is None  # nothing new to keep
    assert again.psnr_gain_db == stopped.val_curve[0][1] and again.val_curve == stopped.val_curve[:1]


def test_the_cache_resumes_a_stopped_training_then_keeps_only_the_full_one(tmp_path: Path, sr2: TaskData) -> None:
    spec = get_space("sr2x").references()["tiny"]
    cache = TrainCache(str(tmp_path / "cache.db"))
    key = (spec.arch_id, CFG.hash(), sr2.data_id)
    first, cached, _ = cache.train(spec, sr2, CFG, get_backend("onnxruntime"), "cpu", (2, 4),
                                   lambda step, gain: step == 4)
    assert first.stopped_at == 4 and not cached and cache.get(*key) is None
    assert cache.get_partial(*key).step == 4
    full, cached, _ = cache.train(spec, sr2, CFG, get_backend("onnxruntime"), "cpu", (2, 4), lambda step, gain: False)
    assert full.resumed_from == 4 and full.stopped_at is None and not cached
    assert cache.get_partial(*key) is None and cache.get(*key).psnr_gain_db == full.psnr_gain_db
    again, cached, _ = cache.train(spec, sr2, CFG, get_backend("onnxruntime"), "cpu", (2, 4), lambda step, gain: True)
    assert cached and again.stopped_at is None  # a full training is never stopped


def test_the_farthest_checkpoint_wins_and_a_foreign_one_is_not_resumed(tmp_path: Path, sr2: TaskData,
                                                                       plain: TrainResult) -> None:
    space = get_space("sr2x")
    tiny, other = space.references()["tiny"], space.references()["fsrcnn_small"]
    cache = TrainCache(str(tmp_path / "cache.db"))
    key = (tiny.arch_id, CFG.hash(), sr2.data_id)
    at_4 = short_train(tiny, sr2, CFG, rungs=(2, 4), on_rung=lambda step, gain: step == 4).checkpoint
    at_2 = short_train(tiny, sr2, CFG, rungs=(2, 4), on_rung=lambda step, gain: True).checkpoint
    cache.put_partial(*key, at_4)
    cache.put_partial(*key, at_2)  # a slower worker's: it does not replace the farther one
    assert cache.get_partial(*key).step == 4
    foreign = short_train(other, sr2, CFG, rungs=(2,), on_rung=lambda step, gain: True).checkpoint
    cache.delete_partial(*key)
    cache.put_partial(*key, foreign)  # not this net's weights: the training starts over
    result, _, _ = cache.train(tiny, sr2, CFG, get_backend("onnxruntime"), "cpu")
    assert result.resumed_from is None and result.stopped_at is None
    assert set(result.state_dict) == set(plain.state_dict)
    assert all(torch.equal(v, plain.state_dict[k]) for k, v in result.state_dict.items())


def test_a_second_search_resumes_the_stopped_trainings_and_reaches_the_same_verdicts(
        sha_search: tuple[Path, dict, str], tmp_path: Path) -> None:
    """Same seed, the first search's database without its full trainings: each candidate the first search
    left stopped meets its checkpoint, reports its rungs again and is stopped at the same rung without
    training; the others train again exactly as before, so every verdict is the same."""
    a_dir, a, db = sha_search
    assert _check_stopped_trials(a_dir, a, db)
    b_db = Path(copy_as_gated(Path(db), a_dir, tmp_path / "b.db"))
    with sqlite3.connect(b_db) as conn:
        conn.execute(f"DELETE FROM {TABLE}")
        left_stopped = {r[0] for r in conn.execute(f"SELECT arch_id FROM {PARTIAL_TABLE}")}
    assert left_stopped
    b_dir = tmp_path / "b"
    proc = run_nas("search", *PRUNING_ARGS, "--pruner", "sha", "--run-dir", str(b_dir), "--latency-db",
                   str(b_db), "--json", "--no-report", "--no-export")
    assert proc.returncode == 0, proc.stderr
    b = json.loads(proc.stdout)
    key = [(r["number"], r["state"], r["arch_id"], r["stopped_at"], r["psnr_gain_db"]) for r in _rows(a_dir)]
    assert key == [(r["number"], r["state"], r["arch_id"], r["stopped_at"], r["psnr_gain_db"]) for r in _rows(b_dir)]
    first_meetings = {}
    for r in _rows(b_dir):
        first_meetings.setdefault(r["arch_id"], r)
    for arch_id in left_stopped:
        r = first_meetings[arch_id]
        train = json.loads((b_dir / "archs" / arch_id / "train.json").read_text())
        assert r["stopped_at"] and train["resumed_from"] is not None
    assert b["this_run"]["resumed_trainings"] >= len(left_stopped)


@pytest.mark.slow
def test_two_workers_share_a_study_with_sha(tmp_path: Path) -> None:
    """--pruner sha in a shared study (journal file, one SQLite latency and training database): each worker
    does its K, every stopped trial keeps its checkpoint, the winner is trained in full."""
    import optuna
    from test_scaleout import counted, env_for, finish, finished, start

    k = 3
    shared = ["--storage", f"journal:{tmp_path / 'study.journal'}", "--study", "sha2", "--latency-db",
              str(tmp_path / "nas.db"), "--trials", str(k), "--pruner", "sha", "--train-steps", "40"]
    run_dirs = [tmp_path / "w0", tmp_path / "w1"]
    procs = [start([*shared, "--run-dir", str(d)], env_for(tmp_path)) for d in run_dirs]
    summaries = [finish(p) for p in procs]
    assert [s["this_run"]["trials"] for s in summaries] == [k, k]
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal")))
    trials = optuna.load_study(study_name="sha2", storage=storage).get_trials(deepcopy=False)
    assert len(finished(trials)) == 2 * k and all(len(counted(trials, d)) == k for d in run_dirs)
    cache = TrainCache(str(tmp_path / "nas.db"))
    run = json.loads((run_dirs[0] / "run.json").read_text())
    for t in trials:
        if "pruned_at_step" in t.user_attrs:
            assert t.state.name == "PRUNED" and t.user_attrs["pruned_at_step"] in run["config"]["rungs"]
            config_hash = TrainConfig(**run["train_config"]).hash()
            checkpoint = cache.get_partial(t.user_attrs["arch_id"], config_hash, run["data"]["data_id"])
            assert checkpoint is not None and checkpoint.step >= t.user_attrs["pruned_at_step"]
    # A worker waits for the workers running when it finishes; one that started only after it was done (a slow
    # start on a loaded machine) cannot be waited for, so the whole study is seen by the last one at least.
    whole = [i for i, s in enumerate(summaries) if s["n_trials"] == 2 * k]
    assert whole and all(summaries[i]["best"] == summaries[whole[0]]["best"] for i in whole)
    best = summaries[whole[0]]["best"]
    train = json.loads((run_dirs[whole[0]] / "archs" / best["arch_id"] / "train.json").read_text())
    assert train["stopped_at"] is None and train["val_curve"][-1][0] == 40
