"""Faults a long search must survive: Ctrl-C, a candidate the backend cannot build, a full or unwritable run dir."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tiny import NO_FINALISTS

TINY = ["--task", "sr2x", "--input-size", "32x48", "--budget-ms", "2", "--seed", "0", "--backend", "onnxruntime",
        "--no-report", "--no-export", *NO_FINALISTS]


def nas(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, check=False,
                          timeout=300, env={**os.environ, **env})


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trials.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_ctrl_c_stops_after_the_current_trial_and_rerunning_resumes(tmp_path: Path) -> None:
    env = {"NAS_CACHE_DIR": str(tmp_path / "cache")}
    run_dir = tmp_path / "run"
    # 3 trials: the interrupted first, then two that only the rerun runs
    args = ["search", *TINY, "--trials", "3", "--train-steps", "30", "--run-dir", str(run_dir),
            "--latency-db", str(tmp_path / "latency.db")]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    deadline = time.monotonic() + 240
    while not list(run_dir.glob("archs/*/latency.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # during the first trial
    _, err = proc.communicate(timeout=240)

    assert proc.returncode == 130, err
    assert "finishing the current trial" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err
    run = json.loads((run_dir / "run.json").read_text())
    assert run["interrupted"] is True
    done = rows(run_dir)
    assert 1 <= len(done) < 3
    assert all(r["state"] in ("COMPLETE", "PRUNED") for r in done), "the current trial was not finished"
    assert run["summary"]["n_trials"] == len(done)

    again = nas(*args, "--json", env=env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["n_trials"] == 3 and summary["this_run"]["trials"] == 3 - len(done)
    assert [r["arch_id"] for r in rows(run_dir)][:len(done)] == [r["arch_id"] for r in done]  # kept as is


@pytest.mark.slow
def test_a_candidate_the_backend_cannot_build_is_a_failed_trial_and_the_search_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from latency_db import BuildError
    from latency_db.backends.onnxruntime import OnnxRuntimeBackend
    from nas.search.config import SearchConfig
    from nas.search.driver import Search
    from nas.target import Budget, Target
    from search_spaces import get_space

    broken = get_space("sr2x").references()["fsrcnn_small"].arch_id
    measure = OnnxRuntimeBackend.measure

    def failing_measure(self: OnnxRuntimeBackend, spec: Any, workload: Any) -> Any:
        if spec.arch_id == broken:
            raise BuildError("ONNX Runtime session build failed: injected by the test")
        return measure(self, spec, workload)

    monkeypatch.setattr(OnnxRuntimeBackend, "measure", failing_measure)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    target = Target.resolve(budget=Budget(2.0), input_size=(32, 48), train_steps=20, backend="onnxruntime",
                            latency_db=str(tmp_path / "latency.db"))
    summary = Search(target, SearchConfig(trials=5, run_dir=str(tmp_path / "run")), quiet=True).run()

    assert summary["n_trials"] == 5 and summary["n_failed"] == 1
    assert summary["best"] is not None and summary["best"]["arch_id"] != broken
    failed = [r for r in rows(tmp_path / "run") if r["state"] == "FAIL"]
    assert [r["arch_id"] for r in failed] == [broken]
    assert "measurement failed" in failed[0]["error"] and "injected by the test" in failed[0]["error"]
    assert failed[0]["trained"] == "False"


@pytest.mark.slow
def test_a_full_run_dir_is_one_error_line_and_keeps_what_was_written(tmp_path: Path) -> None:
    env = {"NAS_CACHE_DIR": str(tmp_path / "cache")}
    run_dir = tmp_path / "run"
    args = ["search", *TINY, "--train-steps", "10", "--run-dir", str(run_dir),
            "--latency-db", str(tmp_path / "latency.db"), "--json"]
    first = nas(*args, "--trials", "1", env=env)
    assert first.returncode == 0, first.stderr
    kept = {p.name: p.read_bytes() for p in (run_dir / "run.json", run_dir / "trials.csv")}
    (run_dir / "run.json.tmp").symlink_to("/dev/full")  # every write there fails with ENOSPC

    full = nas(*args, "--trials", "2", env=env)

    assert full.returncode == 1, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], full.stderr
    assert {n: (run_dir / n).read_bytes() for n in kept} == kept


def test_a_run_dir_that_cannot_be_created_is_one_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    proc = nas("search", *TINY, "--trials", "1", "--run-dir", str(blocker / "run"),
               "--latency-db", str(tmp_path / "latency.db"), env={"NAS_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write run dir" in lines[0], proc.stderr
    assert blocker.read_text() == "not a folder\n"
