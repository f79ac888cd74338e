"""nas db verify: re-times stored rows on this machine and finds (and fixes) a doctored one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from latency_db import LatencyStore, get_backend, latency_key, measure_or_get, workload_for
from latency_db.fingerprint import canonical
from nas.cli import main
from search_spaces import ArchSpec, Conv


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NAS_LATENCY_DB", str(tmp_path / "latency.db"))


def spec(width: int) -> ArchSpec:
    return ArchSpec(space="sr", scale=2, upsample="nearest", color="rgb", space_to_depth=1,
                    head=(Conv(width=width, kernel=3), Conv(width=width, kernel=3)), output_kernel=3)


@pytest.mark.slow
def test_verify_finds_and_fixes_a_doctored_row_and_skips_other_cpus(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "latency.db")
    store, backend = LatencyStore(db), get_backend("onnxruntime")
    nets = [spec(w) for w in (16, 32, 48)]
    true_ms = {s.arch_id: measure_or_get(s, workload_for(s, 64, 64, "fp32"), backend, store).median_ms for s in nets}
    doctored = nets[1].arch_id
    mine = latency_key(nets[0], workload_for(nets[0], 64, 64, "fp32"), backend)
    elsewhere = dataclasses.replace(mine, device=canonical({**json.loads(mine.device), "isa": ["avx2"]}))
    store.put(elsewhere, {k: v for k, v in store.get(mine).items() if k not in ("id", "key_hash", "key_json")})
    with store.engine.connect() as conn:  # a row that says 10x slower than this machine runs it
        conn.execute(text("UPDATE latency SET median_ms = median_ms * 10 WHERE arch_id = :a"), {"a": doctored})
        conn.commit()
    assert main(["db", "verify", "--sample", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert store.count() == 4 and out["eligible"] == 3 and out["without_spec"] == 0 and len(out["checked"]) == 3
    bad = {c["arch_id"]: c for c in out["checked"]}[doctored]
    assert bad["outside"] and bad["ratio"] < 0.5 and not bad["fixed"]
    assert doctored in {c["arch_id"] for c in out["checked"] if c["outside"]}
    assert store.get_row(doctored)["median_ms"] == pytest.approx(10 * true_ms[doctored])  # untouched without --fix
    assert main(["db", "verify", "--sample", "10", "--fix"]) == 0
    text_out = capsys.readouterr().out
    assert "re-timed 3" in text_out and "FIXED" in text_out and "median ratio now/stored" in text_out
    assert store.get_row(doctored)["median_ms"] < 5 * true_ms[doctored]


def test_verify_on_an_empty_database_and_bad_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eligible"] == 0
    for bad in ("0", "x"):
        with pytest.raises(SystemExit) as exc:
            main(["db", "verify", "--sample", bad])
        assert exc.value.code == 2


@pytest.mark.slow
def test_measure_again_adds_a_visit_to_a_windowed_row(tmp_path: Path) -> None:
    """The v2 protocols re-time by adding a visit: the row keeps every window and its latency is the minimum."""
    from latency_db.measure import measure_again, visits_of

    store, backend = LatencyStore(str(tmp_path / "latency.db")), get_backend("onnxruntime")
    net = spec(16)
    workload = workload_for(net, 64, 64, "fp32")
    first = measure_or_get(net, workload, backend, store)
    again = measure_again(net, workload, backend, store, {"canary_ratio": 1.0})
    row = store.get(latency_key(net, workload, backend))
    visits = visits_of(row)
    assert first.visits == 1 and again.visits == 2 and len(visits) == 2 and store.count() == 1
    assert row["median_ms"] == pytest.approx(min(m for v in visits for m in v.medians_ms))
    assert again.median_ms <= first.median_ms and json.loads(row["details_json"])["canary_ratio"] == 1.0


def test_measure_again_keeps_the_steadier_timing(tmp_path: Path) -> None:
    """The v1 protocols re-time a whole block and keep the steadier of the two."""
    from latency_db.measure import measure_again

    store, backend = LatencyStore(str(tmp_path / "latency.db")), get_backend("onnxruntime", protocol="fast-v1")
    net = spec(16)
    workload = workload_for(net, 64, 64, "fp32")
    first = measure_or_get(net, workload, backend, store)
    with store.engine.connect() as conn:  # make the stored timing look unsteady: the new one must win
        conn.execute(text("UPDATE latency SET cov = 9.0, median_ms = 99.0"))
        conn.commit()
    again = measure_again(net, workload, backend, store, {"canary_ratio": 1.0})
    row = store.get(latency_key(net, workload, backend))
    details = json.loads(row["details_json"])
    assert not again.cached and row["cov"] < 9.0 and row["median_ms"] == pytest.approx(again.median_ms)
    assert details["remeasured"] is True and details["other_median_ms"] == pytest.approx(99.0)
    assert details["canary_ratio"] == pytest.approx(1.0) and store.count() == 1 and first.ok
