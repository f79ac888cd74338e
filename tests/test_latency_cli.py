"""nas latency / nas db / nas sweep, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.cli import main

ARCH = {"schema_version": 1, "space": "sr", "scale": 2, "upsample": "nearest", "color": "rgb",
        "space_to_depth": 1, "head": [{"op": "conv", "width": 16, "kernel": 3}], "output_kernel": 3}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NAS_LATENCY_DB", str(tmp_path / "latency.db"))


def test_latency_measures_then_answers_from_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    assert main(["latency", str(arch), "--backend", "onnxruntime", "--input-size", "32x48", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["cached"] is False and first["latency_ms"] > 0 and first["p90_ms"] >= first["latency_ms"] * 0.5
    assert first["backend"] == "onnxruntime" and first["device"] and len(first["arch_id"]) == 64
    assert main(["latency", str(arch), "--backend", "onnxruntime", "--input-size", "32x48"]) == 0
    text = capsys.readouterr().out
    assert "cached: answered from" in text and f"{first['latency_ms']:.3f} ms median" in text


def test_latency_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**ARCH, "head": [{"op": "conv", "width": 12, "kernel": 3}]}))
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database at all")
    assert main(["latency", str(bad)]) == 2
    assert "head[0].width" in capsys.readouterr().err
    assert main(["latency", str(arch), "--backend", "tensorflow"]) == 2
    assert main(["latency", str(arch), "--input-size", "big"]) == 2
    assert main(["latency", str(arch), "--latency-db", str(corrupt)]) == 2
    assert "is not a SQLite database" in capsys.readouterr().err
    assert corrupt.read_bytes() == b"not a database at all"


@pytest.mark.parametrize("level", ["0", "6", "fast"])
def test_bad_tensorrt_opt_level_is_a_usage_error(level: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Level 0 ignores the timing cache; any level outside 1..5 is refused before TensorRT is touched."""
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    monkeypatch.setenv("NAS_TRT_OPT_LEVEL", level)
    assert main(["latency", str(arch), "--backend", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip()
    assert "NAS_TRT_OPT_LEVEL" in err and f"{level!r}" in err and len(err.splitlines()) == 1


def test_db_stats_export_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    main(["latency", str(arch), "--backend", "onnxruntime", "--input-size", "16x16", "--json"])
    capsys.readouterr()
    assert main(["db", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows"] == 1 and stats["groups"][0]["backend"] == "onnxruntime"
    assert main(["db", "export", str(tmp_path / "rows.parquet")]) == 0
    other = str(tmp_path / "other.db")
    assert main(["db", "import", str(tmp_path / "rows.parquet"), "--latency-db", other]) == 0
    assert "imported 1 rows" in capsys.readouterr().out
    assert main(["db", "import", str(tmp_path / "missing.csv")]) == 2


def test_sweep_stores_points_and_writes_a_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep.html"
    assert main(["sweep", "--backend", "onnxruntime", "--input-size", "16x16", "--channels", "8:16:8",
                 "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(p["layers"], p["channels"]) for p in result["points"]] == [(1, 8), (1, 16), (3, 8), (3, 16)]
    assert all(p["median_ms"] > 0 and not p["cached"] for p in result["points"])
    assert out.stat().st_size > 100_000 and "plotly" in out.read_text()[:5000].lower()
    main(["db", "stats", "--json"])
    assert json.loads(capsys.readouterr().out)["rows"] == 4
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--channels", "8:x:8"])
    assert exc.value.code == 2
