"""Training, search and the exported train.py on a real CUDA GPU. Skipped without one."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from test_export import run_clean, write_pngs
from tiny import run_nas

from nas.training.data import load_data
from nas.training.train import TrainConfig, short_train
from search_spaces import get_space

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (importlib.util.find_spec("torch") and torch.cuda.is_available()),
                       reason="needs a CUDA GPU"),
]

BUDGET_MS = 1.0
CUDA_ARGS = ["--task", "sr2x", "--backend", "torch-cuda", "--budget-ms", str(BUDGET_MS), "--trials", "6",
             "--train-steps", "150", "--seed", "0", "--no-report"]


def test_short_training_on_cuda_is_deterministic_and_beats_bicubic() -> None:
    spec = get_space("sr2x").references()["tiny"]
    data = load_data("sr", 2, 48)
    first = short_train(spec, data, TrainConfig(steps=150), device="cuda")
    second = short_train(spec, data, TrainConfig(steps=150), device="cuda")
    assert first.psnr_db == second.psnr_db
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    assert first.moved and first.psnr_gain_db > 0


@pytest.fixture(scope="module")
def cuda_search(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real search on torch-cuda at the GPU default input size (540x960), run twice on one database."""
    root = tmp_path_factory.mktemp("cuda_search")
    db = f"sqlite:///{root / 'latency.db'}"
    runs = []
    for name in ("first", "second"):
        proc = run_nas("search", *CUDA_ARGS, "--run-dir", str(root / name), "--latency-db", db, "--json")
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout))
    return {"root": root, "first": runs[0], "second": runs[1]}


def test_search_on_torch_cuda_gates_trains_and_caches(cuda_search: dict) -> None:
    first, second, root = cuda_search["first"], cuda_search["second"], cuda_search["root"]
    assert first["backend"] == "torch-cuda"
    run = json.loads((root / "first" / "run.json").read_text())
    assert run["config"]["input_size"] == [540, 960]  # the GPU default: render low, display 1080p
    with (root / "first" / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    trained = [r for r in rows if r["trained"] == "True"]
    assert trained and all(float(r["latency_ms"]) <= BUDGET_MS for r in trained)
    assert all(float(r["train_s"] or 0) == 0 for r in rows if r["over_budget"] == "True")
    assert first["best"]["psnr_gain_db"] > 0
    assert second["this_run"]["latency_cache_hits"] == second["this_run"]["trials"] == len(rows)


def test_exported_train_py_trains_on_cuda(cuda_search: dict, tmp_path: Path) -> None:
    best = cuda_search["root"] / "first" / "best"
    data = write_pngs(tmp_path / "frames", 5)
    proc = run_clean(best / "train.py", "--data", str(data), "--patch", "32", "--batch-size", "4", "--steps", "20",
                     "--device", "cuda", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "device cuda" in proc.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()
