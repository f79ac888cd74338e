"""The learned latency predictor: features, fitting, screening margin, and its commands."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from latency_db import LatencyStore, get_backend, latency_key, workload_for
from latency_db.predictor import (
    FitRow,
    PredictorError,
    features,
    fit_predictor,
    predictor_for,
    rows_for_fit,
)
from nas.cli import main
from search_spaces import ArchSpec, Conv, Level, count, get_space

H, W = 32, 48


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NAS_LATENCY_DB", str(tmp_path / "latency.db"))


def synthetic_ms(spec: ArchSpec, noise: float, rng: random.Random) -> float:
    """A made-up device: 3x3 MACs cost more than 1x1 and 5x5 per MAC, a fixed cost per layer, the resize."""
    f = features(spec, workload_for(spec, H, W, "fp32"))
    ms = 0.02 + 0.004 * f["k1_macs"] + 0.002 * f["k3_macs"] + 0.003 * f["k5_macs"] + 0.003 * f["k2_macs"]
    ms += 0.01 * f["convs"] + 0.0005 * f["resize_bicubic_out_pixels"]
    return ms * math.exp(rng.gauss(0.0, noise))


def random_specs(n: int, seed: int) -> list[ArchSpec]:
    space, rng, out = get_space("sr2x"), random.Random(seed), {}
    while len(out) < n:
        spec = space.random_spec(rng, (H, W))
        out[spec.arch_id] = spec
    return list(out.values())


def test_features_walk_every_conv_that_count_counts() -> None:
    spec = ArchSpec(space="sr", scale=2, upsample="bicubic", color="luma", space_to_depth=2,
                    head=(Conv(16, 3), Conv(24, 5)), levels=(Level(width=32, body=(Conv(32, 3),), up_kernel=3),),
                    tail=(Conv(16, 1),), output_kernel=3)
    w = workload_for(spec, H, W, "fp32")
    f = features(spec, w)
    assert sum(f[f"k{k}_macs"] for k in (1, 2, 3, 5)) == pytest.approx(count(spec, H, W).macs / 1e6, rel=1e-12)
    assert f["convs"] == spec.depth + 1        # the luma conv is a conv too
    assert (f["l0_cin"], f["l0_cout"], f["l0_kernel"]) == (3, 1, 1)
    assert (f["l1_cin"], f["l1_cout"], f["l1_kernel"]) == (4, 16, 3)
    assert (f["l3_cout"], f["l3_kernel"], f["l3_pixels"]) == (32, 2, pytest.approx(8 * 12 / 1e3))
    assert features(spec, w) == f


def test_fit_learns_a_device_and_measures_its_own_error() -> None:
    rng = random.Random(0)
    train, test = random_specs(160, 1), random_specs(80, 2)
    rows = [FitRow(s, workload_for(s, H, W, "fp32"), synthetic_ms(s, 0.01, rng)) for s in train]
    pred = fit_predictor(rows)
    truth = [synthetic_ms(s, 0.0, rng) for s in test]
    guess = pred.predict_many(test, [workload_for(s, H, W, "fp32") for s in test])
    within = sum(abs(g / t - 1) <= 0.10 for g, t in zip(guess, truth)) / len(test)
    assert within >= 0.9 and pred.cv_within_10 >= 0.9
    assert 0.0 < pred.p99_rel_error < 0.25 and pred.sigma_log > 0
    assert pred.screens is True and pred.n_rows == 160


def test_screening_never_drops_a_candidate_inside_its_margin() -> None:
    rng = random.Random(3)
    specs = random_specs(120, 4)
    pred = fit_predictor([FitRow(s, workload_for(s, H, W, "fp32"), synthetic_ms(s, 0.03, rng)) for s in specs])
    margin = pred.p99_rel_error
    for budget in (0.1, 0.5, 1.0, 4.0):
        for predicted in (budget * x for x in (0.5, 1.0, 1.0 + margin / 2, 1.0 + margin)):
            assert not pred.over_budget(predicted, budget)
        assert pred.over_budget(budget * (1.0 + margin) * 1.01, budget)
    # A feasible candidate (measured <= budget) predicted within the margin is never screened out.
    for s in random_specs(60, 5):
        measured = synthetic_ms(s, 0.0, rng)
        predicted = pred.predict(s, workload_for(s, H, W, "fp32"))
        if abs(predicted / measured - 1) <= margin:
            assert not pred.over_budget(predicted, measured)
    assert pred.disagrees(1.0, math.exp(3.5 * pred.sigma_log)) and not pred.disagrees(1.0, 1.0)


def store_synthetic(db: str, n: int) -> None:
    """Rows for ``n`` random sr2x nets keyed exactly as this machine's onnxruntime backend keys them."""
    store, backend, rng = LatencyStore(db), get_backend("onnxruntime"), random.Random(7)
    for spec in random_specs(n, 8):
        ms = synthetic_ms(spec, 0.01, rng)
        store.put(latency_key(spec, workload_for(spec, H, W, "fp32"), backend), {
            "summary": spec.summary(), "device": "test", "status": "ok", "error": None, "median_ms": ms,
            "p10_ms": ms, "p90_ms": ms, "p99_ms": ms, "mean_ms": ms, "cov": 0.0, "n_samples": 1,
            "samples_json": json.dumps([ms]), "unstable": False, "attempts": 1, "build_s": 0.0,
            "roofline_ms": None, "host": "h", "measured_at": "2026-01-01T00:00:00+00:00",
            "fingerprint_json": "{}", "details_json": json.dumps({"background_cpus": 0.0})})
        store.put_spec(spec.arch_id, spec.canonical_json())
    store.close()


def test_predict_and_fit_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "latency.db")
    store_synthetic(db, 120)
    spec = random_specs(1, 99)[0]
    arch = tmp_path / "arch.json"
    arch.write_text(spec.to_json())
    assert main(["db", "fit", "--backend", "onnxruntime", "--input-size", f"{H}x{W}", "--json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["rows"] == 120 and fitted["cv_within_10"] >= 0.9
    assert main(["predict", str(arch), "--backend", "onnxruntime", "--input-size", f"{H}x{W}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["predicted_ms"] == pytest.approx(synthetic_ms(spec, 0.0, random.Random(0)), rel=0.15)
    assert out["predictor"]["rows"] == 120
    assert main(["predict", str(arch), "--backend", "onnxruntime", "--input-size", f"{H}x{W}"]) == 0
    assert "predicted" in capsys.readouterr().out


def test_predictor_on_an_empty_database_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text(random_specs(1, 1)[0].to_json())
    for argv in (["predict", str(arch)], ["db", "fit"]):
        assert main([*argv, "--backend", "onnxruntime", "--input-size", f"{H}x{W}"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "0 measured rows match" in err and "at least 20" in err


def test_rows_for_fit_takes_only_this_scope(tmp_path: Path) -> None:
    db = str(tmp_path / "latency.db")
    store_synthetic(db, 30)
    store, backend = LatencyStore(db), get_backend("onnxruntime")
    spec = random_specs(1, 0)[0]
    assert len(rows_for_fit(store, backend, workload_for(spec, H, W, "fp32"))) == 30
    assert rows_for_fit(store, backend, workload_for(spec, H, W + 16, "fp32")) == []
    assert rows_for_fit(store, get_backend("onnxruntime", protocol="full"), workload_for(spec, H, W, "fp32")) == []
    with pytest.raises(PredictorError, match="0 measured rows"):
        predictor_for(store, backend, workload_for(spec, H, W + 16, "fp32"))


def test_export_import_carries_the_specs(tmp_path: Path) -> None:
    db, other = str(tmp_path / "latency.db"), str(tmp_path / "other.db")
    store_synthetic(db, 25)
    LatencyStore(db).export(tmp_path / "rows.parquet")
    assert LatencyStore(other).import_file(tmp_path / "rows.parquet") == (25, 0)
    spec = random_specs(1, 0)[0]
    rows = rows_for_fit(LatencyStore(other), get_backend("onnxruntime"), workload_for(spec, H, W, "fp32"))
    assert len(rows) == 25 and len(LatencyStore(other).specs()) == 25
