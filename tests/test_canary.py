"""Drift canary: history in the database, baseline, and a warning when a real busy process slows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from latency_db import LatencyStore, get_backend, measure_or_get, workload_for
from latency_db.canary import BASELINE_READINGS, CANARY, Canary, CanaryReading
from latency_db.windows import wait_for_quiet
from search_spaces import ArchSpec, Conv

H, W = 64, 96


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


def cpu_ticks(pid: int) -> int:
    """User + system clock ticks process ``pid`` has run (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@contextmanager
def busy() -> Iterator[None]:
    """Twice as many spinning processes as CPUs, killed (by their ids) afterwards."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        # spinning, not still starting: a timer that does not wait (the waiter remembers a busy machine from a
        # baseline reading beside another test) would otherwise time before the load is there
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(cpu_ticks(p.pid) < 10 for p in procs):
            time.sleep(0.05)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_readings_are_stored_and_the_baseline_is_the_first_ones(tmp_path: Path) -> None:
    db = str(tmp_path / "latency.db")
    canary = Canary(get_backend("onnxruntime"), H, W, LatencyStore(db))
    assert canary.details() == {}
    readings = [canary.read("test") for _ in range(BASELINE_READINGS + 1)]
    assert readings[0].ratio == pytest.approx(1.0, abs=1e-12) and readings[0].readings == 1
    again = Canary(get_backend("onnxruntime"), H, W, LatencyStore(db))  # another process, same scope
    history = again.history()
    assert [r["context"] for r in history] == ["test"] * (BASELINE_READINGS + 1)
    first = sorted(r["median_ms"] for r in history[:BASELINE_READINGS])[BASELINE_READINGS // 2]
    assert readings[-1].baseline_ms == pytest.approx(first, rel=1e-12)
    assert canary.details()["canary_ratio"] == pytest.approx(readings[-1].ratio, abs=1e-4)
    other_size = Canary(get_backend("onnxruntime"), H, W + 16, LatencyStore(db))
    assert other_size.history() == [] and other_size.scope_hash != canary.scope_hash


@pytest.mark.slow
def test_a_busy_process_moves_the_canary_and_the_search_is_told(tmp_path: Path) -> None:
    store = LatencyStore(str(tmp_path / "latency.db"))
    # a frame large enough (about 20 ms a run) that no run fits between the spinners' time slices: a 1 ms canary
    # sometimes runs whole windows at quiet speed beside them, and its minimum of window medians does not move
    canary = Canary(get_backend("onnxruntime"), 4 * H, 4 * W, store)
    baseline = []
    for _ in range(BASELINE_READINGS):  # each reading waits out another test's load, as a first wait does
        wait_for_quiet.forget()
        baseline.append(canary.read("baseline"))
    with busy():
        reading = canary.read("busy")
        spec = ArchSpec(space="sr", scale=2, upsample="nearest", color="rgb", space_to_depth=1,
                        head=(Conv(width=8, kernel=3),), output_kernel=3)
        r = measure_or_get(spec, workload_for(spec, H, W, "fp32"), canary.backend, store, details=canary.details())
    assert reading.baseline_ms == pytest.approx(baseline[-1].baseline_ms, rel=1e-12)
    assert reading.ratio > 1.10 and reading.drifted, (reading, baseline)
    assert reading.background_cpus is not None and reading.background_cpus > 0.5
    warning = reading.warning() or ""
    assert "drift canary" in warning and len(warning.splitlines()) == 1
    assert not r.cached
    stored = store.get_row(spec.arch_id)
    assert json.loads(stored["details_json"])["canary_ratio"] == pytest.approx(reading.ratio, abs=1e-4)


def test_no_warning_within_the_drift_band() -> None:
    quiet = CanaryReading(median_ms=1.05, cov=0.01, baseline_ms=1.0, readings=4, background_cpus=0.0)
    slow = CanaryReading(median_ms=1.2, cov=0.01, baseline_ms=1.0, readings=4, background_cpus=1.5)
    fast = CanaryReading(median_ms=0.85, cov=0.01, baseline_ms=1.0, readings=4, background_cpus=0.0)
    assert quiet.warning() is None and not quiet.drifted
    assert slow.drifted and "1.20x" in slow.warning() and "1.5 CPUs" in slow.warning()
    assert fast.drifted
    assert CANARY.arch_id == ArchSpec.from_json(CANARY.to_json()).arch_id
