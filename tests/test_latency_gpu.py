"""TensorRT and torch-cuda on a real GPU: build, timing-cache reuse, measurement. Skipped without one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from latency_db import LatencyStore, get_backend, measure_or_get, workload_for
from search_spaces import get_space


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
needs_trt = pytest.mark.skipif(not (_cuda() and importlib.util.find_spec("tensorrt")),
                               reason="needs TensorRT and a CUDA GPU")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_measures(tmp_path: Path) -> None:
    store = LatencyStore(str(tmp_path / "l.db"))
    spec = get_space("sr2x").references()["espcn"]
    backend = get_backend("torch-cuda")
    r = measure_or_get(spec, workload_for(spec, 540, 960, backend.default_io_dtype), backend, store)
    assert r.error is None and r.median_ms > 0 and r.n_samples >= 3
    assert r.device and r.protocol == "gpu-fast-v1"
    fp = backend.fingerprint()
    assert {"gpu_name", "compute_capability", "sm_count", "memory_mib", "cuda_runtime"} <= set(fp["key"])


@pytest.mark.gpu
@pytest.mark.tensorrt
@needs_trt
def test_tensorrt_builds_reuses_timing_cache_and_measures(tmp_path: Path) -> None:
    store = LatencyStore(str(tmp_path / "l.db"))
    refs = get_space("sr2x").references()
    backend = get_backend("tensorrt")
    w = workload_for(refs["espcn"], 540, 960, "fp16")
    first = measure_or_get(refs["espcn"], w, backend, store)
    assert first.error is None, first.error
    assert first.median_ms > 0 and first.build_s > 0 and first.n_samples >= 3
    cache_file = backend.timing_cache_path()
    assert cache_file.exists() and cache_file.stat().st_size > 0
    size = cache_file.stat().st_size
    # The same layers again in another network: the warm timing cache makes the build faster.
    fresh = get_backend("tensorrt")
    second = measure_or_get(refs["fsrcnn"], workload_for(refs["fsrcnn"], 540, 960, "fp16"), fresh, store)
    assert second.error is None and cache_file.stat().st_size >= size
    again = fresh.measure(refs["espcn"], w)
    assert again.build_s < first.build_s
    assert measure_or_get(refs["espcn"], w, fresh, store).cached
