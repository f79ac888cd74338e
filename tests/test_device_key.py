"""The CPU device key: microarchitecture and ISA flags keep two CPUs' latencies apart."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import pytest

from latency_db import LatencyStore, latency_key, measure_or_get, workload_for
from latency_db.backends.onnxruntime import OnnxRuntimeBackend
from latency_db.fingerprint import (
    CPU_KEY_VERSION,
    DISPATCH_FLAGS,
    cache_sizes_kib,
    canonical,
    cpu_fingerprint,
    cpu_identity,
    cpu_model,
    parse_cpuinfo,
    physical_cores,
)
from nas.cli import main
from search_spaces import ArchSpec, Conv

ZEN3_LIKE = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse4_1 sse4_2 avx avx2 fma f16c

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse4_1 sse4_2 avx avx2 fma f16c
"""
CACHES = {"l1d": 32, "l2": 512, "l3": 32768}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


def identity(extra_flags: str = "") -> dict[str, Any]:
    return cpu_identity(parse_cpuinfo(ZEN3_LIKE.replace("f16c", f"f16c {extra_flags}")), CACHES)


class PinnedCpu(OnnxRuntimeBackend):
    """The real ONNX Runtime backend, fingerprinting as a given CPU identity."""

    def __init__(self, ident: dict[str, Any]) -> None:
        super().__init__()
        self.ident = ident
        self.calls = 0

    def _device_fingerprint(self) -> dict[str, Any]:
        return cpu_fingerprint(self.threads, self.ident)

    def measure(self, spec, workload):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().measure(spec, workload)


SPEC = ArchSpec(space="sr", scale=2, upsample="nearest", color="rgb", space_to_depth=1,
                head=(Conv(width=8, kernel=3),), output_kernel=3)


def test_identity_reads_vendor_family_model_stepping_flags() -> None:
    ident = identity("avx512f avx512bw avx512vl avx512_vnni")
    assert (ident["vendor"], ident["cpu_family"], ident["cpu_model_number"], ident["stepping"]) == (
        "AuthenticAMD", "25", "1", "1")
    assert ident["isa"] == sorted(["sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                                   "avx512vl", "avx512_vnni"])
    assert "fpu" not in ident["isa"] and ident["cache_kib"] == CACHES


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/cpuinfo")
def test_this_machines_key_holds_its_dispatch_flags() -> None:
    flags = set(Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split(":", 1)[1].split())
    key = OnnxRuntimeBackend().fingerprint()["key"]
    assert key["cpu_key_version"] == CPU_KEY_VERSION and key["threads"] == physical_cores()
    assert key["isa"] == sorted(flags & set(DISPATCH_FLAGS))
    assert key["cpu_family"] and key["cpu_model_number"] and key["vendor"]


def test_cache_sizes_from_sysfs(tmp_path: Path) -> None:
    for name, (level, kind, size) in {"index0": ("1", "Data", "48K"), "index1": ("1", "Instruction", "32K"),
                                      "index2": ("2", "Unified", "2048K"), "index3": ("3", "Unified", "96M")}.items():
        (tmp_path / name).mkdir()
        for f, v in (("level", level), ("type", kind), ("size", size)):
            (tmp_path / name / f).write_text(v + "\n")
    assert cache_sizes_kib(str(tmp_path)) == {"l1d": 48, "l2": 2048, "l3": 96 * 1024}
    assert cache_sizes_kib(str(tmp_path / "absent")) == {}


@pytest.mark.slow
def test_fingerprints_differing_only_in_avx512_share_no_rows(tmp_path: Path) -> None:
    store = LatencyStore(str(tmp_path / "latency.db"))
    avx2, avx512 = PinnedCpu(identity()), PinnedCpu(identity("avx512f avx512bw avx512vl"))
    workload = workload_for(SPEC, 16, 16, "fp32")
    assert latency_key(SPEC, workload, avx2).digest != latency_key(SPEC, workload, avx512).digest
    assert not measure_or_get(SPEC, workload, avx2, store).cached
    assert not measure_or_get(SPEC, workload, avx512, store).cached     # not served the other CPU's row
    assert measure_or_get(SPEC, workload, avx2, store).cached
    assert (avx2.calls, avx512.calls, store.count()) == (1, 1, 2)
    groups = store.stats()
    assert sorted(len(g["isa"]) for g in groups) == [6, 9] and all(g["rows"] == 1 for g in groups)


@pytest.mark.slow
def test_legacy_rows_are_kept_and_never_answered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "latency.db")
    store = LatencyStore(db)
    backend = PinnedCpu(identity())
    workload = workload_for(SPEC, 16, 16, "fp32")
    fresh = latency_key(SPEC, workload, backend)
    legacy_device = {"kind": "cpu", "cpu_model": cpu_model(), "physical_cores": physical_cores(),
                     "threads": backend.threads, "machine": platform.machine()}
    legacy = type(fresh)(**{**fresh.__dict__, "device": canonical(legacy_device)})
    row = {"summary": "old", "device": f"{cpu_model()} ({backend.threads} threads)", "status": "ok", "error": None,
           "median_ms": 0.001, "p10_ms": 0.001, "p90_ms": 0.001, "p99_ms": 0.001, "mean_ms": 0.001, "cov": 0.0,
           "n_samples": 1, "samples_json": "[0.001]", "unstable": False, "attempts": 1, "build_s": 0.1,
           "roofline_ms": None, "host": "elsewhere", "measured_at": "2026-01-01T00:00:00+00:00",
           "fingerprint_json": "{}", "details_json": "{}"}
    assert store.put(legacy, row)
    result = measure_or_get(SPEC, workload, backend, store)
    assert not result.cached and backend.calls == 1 and result.median_ms != pytest.approx(0.001)
    assert store.get(legacy)["median_ms"] == pytest.approx(0.001)       # kept and readable
    assert main(["db", "stats", "--latency-db", db]) == 0
    out = capsys.readouterr().out
    assert "legacy CPU key without ISA flags: kept, never answered" in out
    assert "flags avx avx2 f16c fma sse4_1 sse4_2" in out and "2 rows" in out
    assert main(["db", "stats", "--json", "--latency-db", db]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert sorted(g["legacy_cpu_key"] for g in groups) == [False, True]
