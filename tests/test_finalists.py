"""Finalists (issue #25): the best short-trained candidates within the verified budget are trained longer, from
scratch and through the training cache, and the best after that training wins (nas/search/finalists.py)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from tiny import TINY_ARGS, run_nas

from nas.errors import UsageError
from nas.rundir import RunDir, TrialRow, best_trial
from nas.search.config import FINAL_FACTOR, SearchConfig
from nas.search.finalists import finalists_summary, pick, with_finals
from nas.search.verification import finalists as verification_finalists
from nas.target import Budget

FINALISTS = int(TINY_ARGS[TINY_ARGS.index("--finalists") + 1])
FINAL_STEPS = int(TINY_ARGS[TINY_ARGS.index("--final-steps") + 1])


def row(n: int, gain: float | None, lat: float = 1.0, state: str = "COMPLETE", arch: str | None = None,
        **extra: object) -> TrialRow:
    return TrialRow(number=n, state=state, arch_id=arch or f"{n:064x}", latency_ms=lat, latency_p90_ms=lat,
                    trained=gain is not None, psnr_gain_db=gain, **extra)


def final(n: int, rank: int, gain: float | None, error: str = "") -> dict:
    return {"trial": n, "arch_id": f"{n:064x}", "short_rank": rank, "steps": 600, "short_gain_db": 0.0,
            "final_gain_db": gain, "train_s": 1.0, "error": error, "cached": False}


def test_the_finalists_are_the_best_feasible_by_short_gain_one_per_network() -> None:
    rows = [row(0, 0.5), row(1, 0.9), row(2, 0.9, arch=f"{1:064x}"), row(3, 1.5, state="FAIL"),
            row(4, 1.2, stopped_at=30), row(5, 1.1, verified=True, over_budget=True), row(6, 0.7), row(7, 0.6)]
    assert [r.number for r in pick(rows, 3)] == [1, 6, 7]  # 2 is 1's network; 3 failed, 4 stopped, 5 over
    assert pick(rows, 0) == [] and [r.number for r in pick(rows, 9)] == [1, 6, 7, 0]


def test_the_winner_is_the_best_after_the_longer_training() -> None:
    rows = [row(0, 0.9), row(1, 0.8), row(2, 0.7), row(3, 0.6)]
    assert best_trial(rows).number == 0  # no finalists: the short training decides
    finals = {0: final(0, 1, 1.0), 1: final(1, 2, 1.3), 2: final(2, 3, None, error="did not move")}
    rows = with_finals(rows, finals)
    assert [(r.final_steps, r.final_psnr_gain_db) for r in rows] == [(600, 1.0), (600, 1.3), (600, None),
                                                                        (None, None)]
    assert best_trial(rows).number == 1
    summary = finalists_summary(finals, best_trial(rows))
    assert summary["winner_short_rank"] == 2 and summary["changed_winner"] and summary["n"] == 3
    assert finalists_summary({}, None) is None


def test_a_finalist_over_the_verified_budget_cannot_win() -> None:
    rows = with_finals([row(0, 0.9, verified=True, over_budget=True), row(1, 0.8)],
                       {0: final(0, 1, 2.0), 1: final(1, 2, 1.0)})
    assert best_trial(rows).number == 1


def test_the_verification_round_retimes_every_finalist() -> None:
    """With keep=K the round goes down the ranking to the K-th clear fit, so every finalist's latency is verified."""
    rows = [row(n, 1.0 - n / 10, lat=1.0) for n in range(6)]  # every one fits outside the noise band of 10 ms
    assert [r.number for r in verification_finalists(rows, Budget(10.0))] == [0]
    assert [r.number for r in verification_finalists(rows, Budget(10.0), keep=3)] == [0, 1, 2]


def test_bad_finalist_flags_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--finalists"):
        SearchConfig(finalists=-1)
    with pytest.raises(UsageError, match="--final-steps"):
        SearchConfig(final_steps=0)
    assert SearchConfig(final_steps=None).final_steps_for(500) == FINAL_FACTOR * 500
    proc = run_nas("search", "--budget-ms", "4", "--final-steps", "0", "--run-dir", str(tmp_path / "r"),
                   "--latency-db", str(tmp_path / "l.db"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--final-steps" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_search_trains_its_finalists_and_names_the_best_after(tiny_search: dict) -> None:
    run_dir = tiny_search["run_dir"]
    summary = tiny_search["summary"]
    with (run_dir / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    finals = [r for r in rows if r["final_steps"]]
    assert len(finals) == FINALISTS and all(int(r["final_steps"]) == FINAL_STEPS for r in finals)
    assert all(r["verified"] == "True" for r in finals)  # chosen on verified latencies
    feasible = sorted((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: -float(r["psnr_gain_db"]))
    assert {r["number"] for r in finals} == {r["number"] for r in feasible[:FINALISTS]}
    winner = max(finals, key=lambda r: float(r["final_psnr_gain_db"]))
    best = summary["best"]
    assert best["trial"] == int(winner["number"])
    assert best["final_psnr_gain_db"] == pytest.approx(float(winner["final_psnr_gain_db"]), abs=1e-5)
    assert best["psnr_gain_db"] == pytest.approx(float(winner["psnr_gain_db"]), abs=1e-5)  # short, beside it
    record = summary["finalists"]
    assert record["steps"] == FINAL_STEPS and record["n"] == FINALISTS
    assert {t["trial"] for t in record["trials"]} == {int(r["number"]) for r in finals}
    run = json.loads((run_dir / "run.json").read_text())
    assert run["summary"]["finalists"] == record and run["config"]["finalists"] == FINALISTS
    folder = run_dir / "archs" / winner["arch_id"]
    info = json.loads((folder / "final.json").read_text())
    assert info["train_config"]["steps"] == FINAL_STEPS and (folder / "final_weights.safetensors").is_file()
    short = json.loads((folder / "train.json").read_text())
    assert info["train_config"] == {**short["train_config"], "steps": FINAL_STEPS}  # from scratch: only steps differ
    exported = json.loads((run_dir / "best" / "export.json").read_text())
    assert exported["psnr_gain_db"] == pytest.approx(float(winner["final_psnr_gain_db"]), abs=1e-5)
    assert "after the finalists" in (run_dir / "report.html").read_text()


def test_a_finalist_training_is_an_ordinary_cached_training(tiny_search: dict) -> None:
    """Keyed as any training with that many steps: the bench's long training and a later search find it."""
    from nas.training.train import TrainConfig
    from nas.training.train_cache import TrainCache

    run = RunDir.load(tiny_search["run_dir"])
    best = run.best()
    info = run.training(best.arch_id)
    short = run.record(best.arch_id, "train.json")
    config = TrainConfig(**info["train_config"])
    assert config == replace(TrainConfig(**short["train_config"]), steps=FINAL_STEPS)
    assert info["train_config_hash"] == config.hash()
    cached = TrainCache(tiny_search["latency_db"]).get(best.arch_id, config.hash(), run.meta["data"]["data_id"])
    assert cached is not None and cached.psnr_gain_db == pytest.approx(best.final_psnr_gain_db, abs=1e-5)


def test_a_finalists_weights_are_what_the_run_dir_hands_out(tmp_path: Path) -> None:
    """final_weights.safetensors beside the short training's: RunDir.weights and .training give the longer one."""
    import torch

    from nas.rundir import RunDirWriter
    from nas.training.train import TrainResult
    from search_spaces import build, get_space

    spec = get_space("sr2x").references()["tiny"]
    state = build(spec).state_dict()

    def result(fill: float, gain: float) -> TrainResult:
        return TrainResult(psnr_db=30.0 + gain, bicubic_psnr_db=30.0, psnr_gain_db=gain, ssim=0.9, loss_curve=[],
                           val_curve=[], train_s=1.0, moved=True,
                           state_dict={k: torch.full_like(v, fill) for k, v in state.items()})

    writer = RunDirWriter(tmp_path / "run")
    writer.check("s")
    writer.create()
    writer.write_arch(spec)
    writer.write_training(spec.arch_id, result(0.0, 0.5), {"steps": 150}, "h1")
    row = TrialRow(number=0, state="COMPLETE", arch_id=spec.arch_id, latency_ms=0.1, trained=True, psnr_gain_db=0.5)
    writer.write_trials([row])
    writer.write_run_json({"study": "s", "config": {"budget_ms": 1.0}, "summary": None})
    run = RunDir.load(tmp_path / "run")
    assert all(float(v.abs().max()) == 0.0 for v in run.weights(spec.arch_id).values())
    writer.write_training(spec.arch_id, result(1.0, 0.8), {"steps": 600}, "h2", final=True)
    assert all(float(v.min()) == 1.0 for v in run.weights(spec.arch_id).values())
    assert run.training(spec.arch_id)["train_config"] == {"steps": 600}
    assert run.record(spec.arch_id, "train.json")["train_config"] == {"steps": 150}
