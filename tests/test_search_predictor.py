"""nas search --predictor: flag errors, the empty-database error, and screening end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_predictor import H, W, store_synthetic
from tiny import NO_FINALISTS

from latency_db import LatencyStore
from nas.cli import main

SEARCH = ["search", "--task", "sr2x", "--input-size", f"{H}x{W}", "--trials", "6", "--train-steps", "20",
          "--backend", "onnxruntime", "--no-report", "--no-export", *NO_FINALISTS]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NAS_LATENCY_DB", str(tmp_path / "latency.db"))


def test_bad_predictor_flags_are_one_line_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--predictor", "maybe"], ["--predictor", "guide", "--sampler", "tpe"]):
        try:
            code = main([*SEARCH, "--budget-ms", "1", "--run-dir", str(tmp_path / "r"), *argv])
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "--predictor" in err
    assert not (tmp_path / "r").exists()


def test_predictor_asked_for_on_an_empty_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SEARCH, "--budget-ms", "1", "--run-dir", str(tmp_path / "r"), "--predictor", "screen"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nas search: error: --predictor screen: 0 measured rows match")
    assert sum("error" in line for line in err) == 1


@pytest.mark.slow
def test_screened_candidates_are_never_measured_nor_trained(tmp_path: Path) -> None:
    db = str(tmp_path / "latency.db")
    store_synthetic(db, 120)   # a made-up device under this machine's key: every net predicted >= 0.02 ms
    before = LatencyStore(db).count()
    budget = 0.005
    code = main([*SEARCH, "--budget-ms", str(budget), "--run-dir", str(tmp_path / "r"), "--predictor", "screen"])
    assert code == 3   # nothing fits
    run = json.loads((tmp_path / "r" / "run.json").read_text())["summary"]
    assert run["this_run"]["predictor"] == "screen" and run["this_run"]["screened"] == 6
    assert run["n_predicted_over_budget"] == 6 and run["n_trained"] == 0
    assert run["this_run"]["canary"]["readings"] == 1
    assert LatencyStore(db).count() == before                     # nothing was measured
    for folder in (tmp_path / "r" / "archs").iterdir():
        assert not (folder / "latency.json").exists() and not (folder / "train.json").exists()
    with (tmp_path / "r" / "trials.csv").open() as fh:
        rows = fh.read().splitlines()[1:]
    assert len(rows) == 6 and all(",True," in r for r in rows)     # over budget, as predicted
