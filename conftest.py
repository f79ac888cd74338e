"""Root fixtures shared by every test module: a real tiny search, run once per session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Small enough for CI on 2 cores, large enough that the gate, the cache and training all act:
# 32x48 frames, a budget that the larger references miss, 6 trials of 40 training steps.
TINY_ARGS = ["--task", "sr2x", "--input-size", "32x48", "--budget-ms", "0.35", "--trials", "6",
             "--train-steps", "40", "--seed", "0", "--backend", "onnxruntime"]


def run_nas(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``nas`` CLI in a subprocess (as a user would)."""
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, env=env)


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real tiny `nas search --json`: its run dir, latency database URL and JSON summary."""
    root = tmp_path_factory.mktemp("tiny_search")
    db = f"sqlite:///{root / 'latency.db'}"
    run_dir = root / "run"
    proc = run_nas("search", *TINY_ARGS, "--run-dir", str(run_dir), "--latency-db", db, "--json")
    assert proc.returncode == 0, proc.stderr
    return {"run_dir": run_dir, "latency_db": db, "summary": json.loads(proc.stdout), "stdout": proc.stdout, "stderr": proc.stderr,
            "root": root}


@pytest.fixture(scope="session")
def tiny_run_dir(tiny_search: dict) -> Path:
    """The run dir of the session's tiny search (run.json, trials.csv, archs/, report.html, best/)."""
    return tiny_search["run_dir"]
