"""The user's own network as a baseline (--baseline NAME=model.onnx): converted, timed by content, judged twice,
and bad graphs refused in one line with exit 2 and nothing written. Real ONNX Runtime, real torch.onnx exports."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from baseline_nets import LumaShuffle, PReLUTranspose, onnx_bytes, write_nets
from onnx import TensorProto, helper
from tiny import NO_FINALISTS, run_nas

from latency_db.graph import OnnxGraph
from latency_db.keys import graph_id
from nas.baseline.load import load_baseline, run_graph
from nas.target import Budget, Target
from search_spaces.onnx_import import ConversionError, to_module

FAST = ["--input-size", "32x48", "--budget-ms", "50", "--trials", "1", "--no-warm-start", "--train-steps", "10",
        "--backend", "onnxruntime", "--no-export", *NO_FINALISTS]


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_nets(tmp_path_factory.mktemp("nets"))


def target(tmp_path: Path, task: str = "sr2x") -> Target:
    return Target.resolve(budget=Budget(50.0, "median"), task=task, backend="onnxruntime", input_size=(32, 48),
                          latency_db=str(tmp_path / "lat.db"), train_steps=10)


@pytest.mark.parametrize("make, channels", [(PReLUTranspose, 3), (LumaShuffle, 1)])
def test_converted_module_matches_onnxruntime(make: type, channels: int) -> None:
    torch.manual_seed(1)
    data = onnx_bytes(make(), channels)
    x = np.random.default_rng(0).random((1, channels, 24, 40), dtype=np.float32)
    got = to_module(data)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, run_graph(data, x), atol=1e-4)
    assert sum(p.numel() for p in to_module(data).parameters()) > 0  # weights are parameters: it can be trained


def test_an_operator_the_converter_lacks_is_named(nets: dict[str, Path]) -> None:
    with pytest.raises(ConversionError, match="Erf"):
        to_module(nets["erf"].read_bytes())


def test_graph_checks_give_kind_dtype_scale_and_conversion(nets: dict[str, Path], tmp_path: Path) -> None:
    t = target(tmp_path)
    rgb, luma, half = (load_baseline(k, str(nets[k]), t) for k in ("rgb", "luma", "rgb16"))
    assert (rgb.kind, rgb.graph.io_dtype, rgb.graph.scale, rgb.converts) == ("rgb", "fp32", 2, True)
    assert (luma.kind, luma.graph.channels, luma.converts) == ("luma", 1, True)
    assert (half.graph.io_dtype, half.converts) == ("fp16", True)
    erf = load_baseline("erf", str(nets["erf"]), t)
    assert not erf.converts and "Erf" in (erf.note or "")


def test_latency_is_keyed_by_the_graphs_content(nets: dict[str, Path], tmp_path: Path) -> None:
    from latency_db.candidates import workload_for
    from latency_db.measure import measure_or_get

    t = target(tmp_path)
    copy = tmp_path / "renamed.onnx"
    shutil.copy(nets["rgb"], copy)
    first = load_baseline("a", str(nets["rgb"]), t).graph
    again = load_baseline("b", str(copy), t).graph
    assert first.arch_id == again.arch_id == graph_id(nets["rgb"].read_bytes())
    other = load_baseline("c", str(nets["rgb16"]), t).graph
    assert other.arch_id != first.arch_id
    store = t.open_store()
    wl = workload_for(first, 32, 48, first.io_dtype)
    measured = measure_or_get(first, wl, t.backend, store)
    assert measured.ok and not measured.cached and measured.median_ms > 0
    assert measure_or_get(again, wl, t.backend, store).cached  # another file of the same bytes: no new timing


def _graph(tmp_path: Path, name: str, nodes: list, inputs: list, outputs: list, inits: list | None = None,
           opsets: list | None = None) -> Path:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializer=inits or []),
                              opset_imports=opsets or [helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def bad_graphs(tmp_path: Path, nets: dict[str, Path]) -> dict[str, tuple[Path, list[str], str]]:
    """Each bad input: (file, extra flags, what the one line must say)."""
    text = tmp_path / "notes.onnx"
    text.write_text("not a graph\n")
    f = TensorProto.FLOAT
    rank3 = _graph(tmp_path, "rank3", [helper.make_node("Relu", ["x"], ["y"])],
                   [helper.make_tensor_value_info("x", f, [3, 32, 48])],
                   [helper.make_tensor_value_info("y", f, [3, 32, 48])])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 3, 64, 64])
    fixed = _graph(tmp_path, "fixed", [helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest"),
                                       helper.make_node("Reshape", ["r", "shape"], ["y"])],
                   [helper.make_tensor_value_info("x", f, [1, 3, 32, 32])],
                   [helper.make_tensor_value_info("y", f, [1, 3, 64, 64])],
                   [shape, helper.make_tensor("scales", f, [4], [1, 1, 2, 2])])
    custom = _graph(tmp_path, "custom", [helper.make_node("Upscale", ["x"], ["y"], domain="com.example")],
                    [helper.make_tensor_value_info("x", f, [1, 3, "h", "w"])],
                    [helper.make_tensor_value_info("y", f, [1, 3, "H", "W"])],
                    opsets=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    two = _graph(tmp_path, "two", [helper.make_node("Relu", ["x"], ["y"])],
                 [helper.make_tensor_value_info("x", f, [1, 2, "h", "w"])],
                 [helper.make_tensor_value_info("y", f, [1, 2, "h", "w"])])
    return {
        "not onnx": (text, [], "not a valid ONNX model"),
        "missing": (tmp_path / "nowhere.onnx", [], "cannot read it"),
        "wrong rank": (rank3, [], "rank 3"),
        "scale": (nets["rgb"], ["--task", "sr3x"], "scales by 2, but the task sr3x is x3"),
        "shape it cannot fix": (fixed, [], "its input is fixed at 32x32"),
        "op the backend lacks": (custom, [], "ONNX Runtime cannot run it"),
        "channels": (two, [], "takes 2 channels"),
    }


def test_a_retraining_is_a_cached_training_keyed_by_the_graph_and_its_steps(nets: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    """The second retraining of one graph with one config answers from the training cache with the same numbers; the
    row is the graph's own (its content id), and another step count is another training."""
    from dataclasses import replace

    from nas.baseline.quality import retrained
    from nas.training.train_cache import TABLE, TrainCache

    t = target(tmp_path)
    b, data = load_baseline("luma", str(nets["luma"]), t), t.load_data()
    cache = TrainCache(str(tmp_path / "lat.db"))
    config = replace(t.train_config, steps=4)
    first = retrained(b, data, config, cache=cache)
    again = retrained(b, data, config, cache=cache)
    assert not first["cached"] and first["train_s"] > 0 and again["cached"] and again["train_s"] == 0
    assert {k: v for k, v in again.items() if k not in ("cached", "train_s")} == \
        {k: v for k, v in first.items() if k not in ("cached", "train_s")}
    plain = replace(config, reparam="none")  # a baseline trains plain, whatever the search's --reparam
    assert cache.get(b.graph.arch_id, plain.hash(), data.data_id).psnr_gain_db == first["psnr_gain_db"]
    with sqlite3.connect(tmp_path / "lat.db") as conn:  # PostgreSQL holds 64 characters there (test_agent_graphs)
        assert [len(r[0]) for r in conn.execute(f"SELECT arch_id FROM {TABLE}")] == [64]
    longer = retrained(b, data, replace(config, steps=6), cache=cache)
    assert not longer["cached"] and longer["steps"] == 6


CASES = ["not onnx", "missing", "wrong rank", "scale", "shape it cannot fix", "op the backend lacks", "channels"]


@pytest.mark.parametrize("case", CASES)
def test_bad_baseline_is_one_line_exit_2_nothing_written(case: str, nets: dict[str, Path], tmp_path: Path) -> None:
    path, extra, says = bad_graphs(tmp_path, nets)[case]
    run_dir, db = tmp_path / "run", tmp_path / "lat.db"
    proc = run_nas("search", *FAST, *extra, "--run-dir", str(run_dir), "--latency-db", str(db),
                   "--baseline", f"mine={path}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert not run_dir.exists() and not db.exists()


@pytest.mark.slow
def test_search_and_report_show_both_views(nets: dict[str, Path], tmp_path: Path) -> None:
    """With a finalist trained 20 steps, each baseline is also retrained 20 steps (``retrained_final``); ``nas report``
    judging the same graph again on the run answers both retrainings from the training cache."""
    run_dir, db = tmp_path / "run", str(tmp_path / "lat.db")
    proc = run_nas("search", *FAST, "--finalists", "1", "--final-steps", "20", "--run-dir", str(run_dir),
                   "--latency-db", db, "--json", "--baseline", f"fsrcnnish={nets['rgb']}",
                   "--baseline", f"espcn-y={nets['luma']}")
    assert proc.returncode == 0, proc.stderr
    assert [b["name"] for b in json.loads(proc.stdout)["baselines"]] == ["fsrcnnish", "espcn-y"]
    found = {b["name"]: b for b in json.loads((run_dir / "run.json").read_text())["baselines"]}
    for b in found.values():
        assert b["latency_ms"] > 0 and b["latency"]["protocol"] == "cpu-fast-v4"
        assert np.isfinite(b["pretrained"]["psnr_gain_db"]) and np.isfinite(b["retrained"]["psnr_gain_db"])
        assert b["retrained"]["steps"] == 10 and b["retrained_note"] is None and not b["retrained"]["cached"]
        assert b["retrained_final"]["steps"] == 20 and np.isfinite(b["retrained_final"]["psnr_gain_db"])
    assert found["espcn-y"]["channels"] == "luma"
    html = (run_dir / "report.html").read_text()
    assert "your networks, as given" in html and "baseline-table" in html
    assert "retrained as long as the finalists" in html
    # nas report adds one more to the finished run: the pretrained view alone for a graph that does not convert;
    # a graph the search judged, given again, is retrained from the cache
    proc = run_nas("report", str(run_dir), "--latency-db", db, "--baseline", f"gelu={nets['erf']}",
                   "--baseline", f"espcn-y={nets['luma']}")
    assert proc.returncode == 0, proc.stderr
    assert "does not convert to PyTorch" in proc.stderr
    again = {b["name"]: b for b in json.loads((run_dir / "run.json").read_text())["baselines"]}
    assert set(again) == {"fsrcnnish", "espcn-y", "gelu"}
    assert again["gelu"]["retrained"] is None and "Erf" in again["gelu"]["retrained_note"]
    assert again["gelu"]["pretrained"]["psnr_gain_db"] is not None
    for view in ("retrained", "retrained_final"):
        assert again["espcn-y"][view]["cached"] and again["espcn-y"][view]["train_s"] == 0
        assert again["espcn-y"][view]["psnr_gain_db"] == found["espcn-y"][view]["psnr_gain_db"]


def test_onnx_graph_counts_its_convolutions(nets: dict[str, Path]) -> None:
    from latency_db.candidates import counts_for, workload_for

    graph = OnnxGraph(data=nets["rgb"].read_bytes(), channels=3, scale=2, io_dtype="fp32")
    counts = counts_for(graph, workload_for(graph, 32, 48, "fp32"))
    model = onnx.load(str(nets["rgb"]))
    assert counts.params == sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    first_conv = 32 * 48 * 16 * 3 * 5 * 5
    assert counts.macs > first_conv


def test_bench_refuses_a_bad_baseline_before_writing(tmp_path: Path) -> None:
    bad = tmp_path / "notes.onnx"
    bad.write_text("not a graph\n")
    out, db = tmp_path / "bench", tmp_path / "lat.db"
    proc = run_nas("bench", "--budgets", "50", "--seeds", "0", "--trials", "1", "--train-steps", "5",
                   "--input-size", "32x48", "--backend", "onnxruntime", "--out", str(out), "--latency-db", str(db),
                   "--baseline", f"mine={bad}")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not a valid ONNX model" in proc.stderr
    assert not out.exists() and not db.exists()


def test_bench_md_tabulates_both_views_and_the_budgets_each_fits() -> None:
    from nas.bench.baselines import baselines_md

    view = {"psnr_gain_db": 0.5}
    records = [{"name": "mine", "channels": "luma", "io_dtype": "fp16", "latency_ms": 3.0, "pretrained": view,
                "retrained": {"psnr_gain_db": 0.25}, "retrained_long": {"psnr_gain_db": 0.75}, "retrained_note": None},
               {"name": "odd", "channels": "rgb", "io_dtype": "fp32", "latency_ms": 9.0, "pretrained": view,
                "retrained": None, "retrained_long": None, "retrained_note": "the operator Erf is not converted"}]
    text = "\n".join(baselines_md(records, [2.0, 4.0, 8.0]))
    assert "| mine | luma, fp16 | 3.000 | 4, 8 | +0.500 | +0.250 | +0.750 |" in text
    assert "| odd | rgb, fp32 | 9.000 | none | +0.500 | - (does not convert: the operator Erf is not converted) | - |" \
        in text
    assert baselines_md([], [2.0]) == []
