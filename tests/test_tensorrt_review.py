"""The TensorRT backend checked against NVIDIA's own usage (trtexec, Polygraphy, the Python API docs),
without TensorRT or a GPU: a fake ``tensorrt`` module stands in sys.modules (the backend imports
TensorRT only inside its functions) and the few ``torch.cuda`` calls of the timing loop are faked.

Each test drives the public path (``measure_or_get`` or ``Backend.measure``) and checks what reaches
the store: a failure that may not recur is not cached, a fallback from CUDA graphs is visible in the
row, the shared timing-cache file is never overwritten by a cache TensorRT rejected.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

import latency_db.backends.tensorrt as trt_backend
from latency_db import LatencyStore, Workload, latency_key, measure_or_get, workload_for
from latency_db.backends.tensorrt import TensorRTBackend
from search_spaces import ArchSpec, Conv

NEW_TACTIC = "conv3x3-fp16-tactic"


@dataclass
class Knobs:
    """How the fake TensorRT behaves in one test, and what it saw."""

    version: str = "10.8.0"
    plan: bytes | None = b"plan"
    engine_none: bool = False
    context_none: bool = False
    set_address_ok: bool = True
    execute_ok: bool = True
    execute_ok_capturing: bool = True
    get_cache_none: bool = False
    during_build: Any = None          # called with no argument inside build_serialized_network
    capturing: bool = False
    capture_modes: list[Any] = field(default_factory=list)
    network_flags: list[int] = field(default_factory=list)
    builder_flags: list[Any] = field(default_factory=list)
    launches: int = 0


class _Flag(enum.IntEnum):
    STRONGLY_TYPED = 1  # TensorRT 10: EXPLICIT_BATCH = 0 (ignored), STRONGLY_TYPED = 1


class _BuilderFlag(enum.IntEnum):
    FP16 = 0
    TF32 = 6


class _DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1


class FakeTimingCache:
    """Entries as a set; a blob starting with REJECT stands for a file TensorRT does not accept."""

    def __init__(self, entries: set[str], valid: bool = True) -> None:
        self.entries, self.valid = entries, valid

    @classmethod
    def parse(cls, data: bytes) -> FakeTimingCache:
        if data.startswith(b"REJECT"):
            return cls(set(), valid=False)
        return cls({e for e in data.decode().split(",") if e})

    def serialize(self) -> bytes:
        return ",".join(sorted(self.entries)).encode()

    def combine(self, other: FakeTimingCache, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        if not other.valid:
            return False
        self.entries |= other.entries
        return True


def make_fake_trt(knobs: Knobs) -> types.ModuleType:
    """A ``tensorrt`` module with just what latency_db.backends.tensorrt calls, driven by ``knobs``."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = knobs.version
    trt.NetworkDefinitionCreationFlag = _Flag
    trt.BuilderFlag = _BuilderFlag
    trt.DataType = _DataType
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self) -> None:
            pass

    class Config:
        def __init__(self) -> None:
            self.cache: FakeTimingCache | None = None
            self.builder_optimization_level = 3

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            pass

        def set_flag(self, flag: Any) -> None:
            knobs.builder_flags.append(flag)

        def create_timing_cache(self, data: bytes) -> FakeTimingCache:
            return FakeTimingCache.parse(bytes(data))

        def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
            assert ignore_mismatch is False
            if not cache.valid:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self) -> FakeTimingCache | None:
            return None if knobs.get_cache_none else self.cache

    class Builder:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> object:
            knobs.network_flags.append(flags)
            return object()

        def create_builder_config(self) -> Config:
            return Config()

        def build_serialized_network(self, network: object, config: Config) -> bytes | None:
            if knobs.during_build is not None:
                knobs.during_build()
            if knobs.plan is None:
                self.logger.log(ILogger.Severity.ERROR, "no implementation for Conv_3")
                return None
            if config.cache is not None:
                config.cache.entries.add(NEW_TACTIC)
            return knobs.plan

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: object, logger: Any) -> None:
            pass

        def parse(self, graph: bytes) -> bool:
            return True

    class Context:
        def set_tensor_address(self, name: str, ptr: int) -> bool:
            return knobs.set_address_ok

        def execute_async_v3(self, stream_handle: int) -> bool:
            knobs.launches += 1
            return knobs.execute_ok_capturing if knobs.capturing else knobs.execute_ok

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i: int) -> str:
            return ("input", "output")[i]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (1, 3, 4, 4)

        def get_tensor_dtype(self, name: str) -> _DataType:
            return _DataType.HALF

        def create_execution_context(self) -> Context | None:
            return None if knobs.context_none else Context()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
            return None if knobs.engine_none else Engine()

    trt.ILogger, trt.Builder, trt.OnnxParser, trt.Runtime = ILogger, Builder, OnnxParser, Runtime
    return trt


def fake_cuda(monkeypatch: pytest.MonkeyPatch, knobs: Knobs) -> None:
    """The torch.cuda calls of the session and the timing loop, on the CPU; graph capture sets
    ``knobs.capturing`` while its body runs and records the capture mode it was asked for."""

    class Stream:
        cuda_stream = 7

        def synchronize(self) -> None:
            pass

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            pass

        def record(self, stream: Any = None) -> None:
            pass

        def elapsed_time(self, end: Any) -> float:
            return 1.0

    class CUDAGraph:
        def replay(self) -> None:
            pass

    @contextlib.contextmanager
    def graph(cuda_graph: Any, pool: Any = None, stream: Any = None,
              capture_error_mode: str | None = None) -> Iterator[None]:
        knobs.capture_modes.append(capture_error_mode)
        knobs.capturing = True
        try:
            yield
        finally:
            knobs.capturing = False

    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *size, device=None, **kw: real_rand(*size, **kw))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", CUDAGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)


@pytest.fixture
def knobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Knobs:
    """A fake TensorRT and CUDA for one test; the backend's per-process builder starts fresh."""
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    k = Knobs()
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt(k))
    monkeypatch.setattr(trt_backend, "_BUILDER", {})  # else a builder made by another test's TensorRT stays
    monkeypatch.setattr(trt_backend, "export_graph", lambda spec, workload: b"onnx")
    monkeypatch.setattr(trt_backend, "gpu_fingerprint", lambda index: {
        "device": "Fake GPU", "info": {"uuid": "GPU-fake"},
        "key": {"kind": "gpu", "gpu_name": "Fake GPU", "compute_capability": "9.0", "sm_count": 132,
                "memory_mib": 81559, "cuda_runtime": "12.8"}})
    fake_cuda(monkeypatch, k)
    return k


@pytest.fixture
def store(tmp_path: Path) -> LatencyStore:
    return LatencyStore(str(tmp_path / "latency.db"))


SPEC = ArchSpec(space="sr", scale=2, upsample="nearest", color="rgb", space_to_depth=1,
                head=(Conv(width=16, kernel=3),), output_kernel=3)


def workload(io_dtype: str = "fp16") -> Workload:
    return workload_for(SPEC, 16, 16, io_dtype)


def stored_details(store: LatencyStore, backend: TensorRTBackend, w: Workload) -> dict[str, Any]:
    row = store.get(latency_key(SPEC, w, backend))
    assert row is not None, "nothing was stored"
    return json.loads(row["details_json"] or "{}")


# 1. execute_async_v3 / set_tensor_address return False on failure: trtexec and Polygraphy treat it as fatal.

def test_failed_launch_is_an_uncached_error_not_an_empty_stream_timed(
        knobs: Knobs, store: LatencyStore) -> None:
    knobs.execute_ok = knobs.execute_ok_capturing = False
    backend, w = TensorRTBackend(), workload()
    r = measure_or_get(SPEC, w, backend, store)
    assert r.error is not None and "execute_async_v3 returned False" in r.error
    assert r.median_ms is None
    assert store.get(latency_key(SPEC, w, backend)) is None  # not cached: measured again next time


def test_set_tensor_address_false_is_an_uncached_error(knobs: Knobs, store: LatencyStore) -> None:
    knobs.set_address_ok = False
    backend, w = TensorRTBackend(), workload()
    r = measure_or_get(SPEC, w, backend, store)
    assert r.error is not None and "set_tensor_address('input') returned False" in r.error
    assert store.get(latency_key(SPEC, w, backend)) is None


def test_launch_failing_under_capture_falls_back_to_plain_launches_and_the_row_says_why(
        knobs: Knobs, store: LatencyStore) -> None:
    """trtexec: "the enqueue call may return false if the current CUDA graph capture fails"; the graph is
    then not used. Plain launches are timed and the stored row says cuda_graph false and why."""
    knobs.execute_ok_capturing = False
    backend, w = TensorRTBackend(), workload()
    r = measure_or_get(SPEC, w, backend, store)
    assert r.error is None and r.median_ms is not None
    details = stored_details(store, backend, w)
    assert details["cuda_graph"] is False
    assert "execute_async_v3 returned False" in details["cuda_graph_error"]
    assert knobs.launches > 3  # the plain launches were timed, not a graph that captured nothing


# 5. Capture mode: trtexec captures with cudaStreamCaptureModeThreadLocal (samples/common/sampleDevice.h).

def test_graph_capture_is_thread_local_and_a_good_capture_is_marked(
        knobs: Knobs, store: LatencyStore) -> None:
    backend, w = TensorRTBackend(), workload()
    assert measure_or_get(SPEC, w, backend, store).error is None
    assert knobs.capture_modes == ["thread_local"]
    details = stored_details(store, backend, w)
    assert details["cuda_graph"] is True and "cuda_graph_error" not in details


# 2. A None context (static allocation: usually out of memory) may not recur: not cached.

def test_no_execution_context_is_not_cached(knobs: Knobs, store: LatencyStore) -> None:
    knobs.context_none = True
    backend, w = TensorRTBackend(), workload()
    first = measure_or_get(SPEC, w, backend, store)
    assert first.error is not None and "execution context" in first.error
    assert store.get(latency_key(SPEC, w, backend)) is None
    knobs.context_none = False  # memory freed meanwhile: the next call measures
    second = measure_or_get(SPEC, w, backend, store)
    assert second.error is None and not second.cached


def test_engine_that_does_not_deserialize_is_not_cached(knobs: Knobs, store: LatencyStore) -> None:
    """The plan was built by this very process: failing to load it is not a verdict on the candidate."""
    knobs.engine_none = True
    backend, w = TensorRTBackend(), workload()
    r = measure_or_get(SPEC, w, backend, store)
    assert r.error is not None and "deserialize" in r.error
    assert store.get(latency_key(SPEC, w, backend)) is None


def test_guard_a_build_that_fails_stays_a_cached_verdict(knobs: Knobs, store: LatencyStore) -> None:
    """Guard (passes before and after): no plan is still a BuildError, cached with TensorRT's reason."""
    knobs.plan = None
    backend, w = TensorRTBackend(), workload()
    r = measure_or_get(SPEC, w, backend, store)
    assert r.error is not None and "no implementation for Conv_3" in r.error
    assert measure_or_get(SPEC, w, backend, store).cached


# 3. Strongly typed on every 10.x (the flag exists since 10.0); the FP16 builder flag never set.

@pytest.mark.parametrize("version", ["10.0.1", "10.8.0", "10.11.0", "10.12.0", "11.4.0"])
@pytest.mark.parametrize("io_dtype", ["fp16", "fp32"])
def test_network_is_strongly_typed_and_fp16_flag_never_set(knobs: Knobs, version: str, io_dtype: str) -> None:
    sys.modules["tensorrt"].__version__ = version
    backend, w = TensorRTBackend(), workload(io_dtype)
    assert backend.measure(SPEC, w).samples_ms
    assert knobs.network_flags == [1 << int(_Flag.STRONGLY_TYPED)]
    assert _BuilderFlag.FP16 not in knobs.builder_flags  # an fp32 key never holds fp16 kernels
    settings = backend.builder_settings(w)
    assert settings["strongly_typed"] is True and settings["fp16_flag"] is False


# 4. set_timing_cache / combine return False when TensorRT rejects a cache; get_timing_cache may be None.

def test_rejected_shared_timing_cache_builds_cold_and_is_left_alone(
        knobs: Knobs, store: LatencyStore) -> None:
    backend, w = TensorRTBackend(), workload()
    path = backend.timing_cache_path()
    path.write_bytes(b"REJECT: written by another TensorRT build")
    r = measure_or_get(SPEC, w, backend, store)
    assert r.error is None
    assert path.read_bytes() == b"REJECT: written by another TensorRT build"
    assert "rejected" in stored_details(store, backend, w)["timing_cache"]


def test_shared_file_turned_unmergeable_during_the_build_is_not_overwritten(
        knobs: Knobs, store: LatencyStore) -> None:
    backend, w = TensorRTBackend(), workload()
    path = backend.timing_cache_path()
    path.write_bytes(b"old-tactic")
    knobs.during_build = lambda: path.write_bytes(b"REJECT: replaced meanwhile by another process")
    r = measure_or_get(SPEC, w, backend, store)
    assert r.error is None
    assert path.read_bytes() == b"REJECT: replaced meanwhile by another process"
    assert "not saved" in stored_details(store, backend, w)["timing_cache"]


def test_no_timing_cache_after_the_build_is_not_an_error(knobs: Knobs, store: LatencyStore) -> None:
    knobs.get_cache_none = True
    backend, w = TensorRTBackend(), workload()
    path = backend.timing_cache_path()
    path.write_bytes(b"old-tactic")
    r = measure_or_get(SPEC, w, backend, store)
    assert r.error is None
    assert path.read_bytes() == b"old-tactic"
    assert "not saved" in stored_details(store, backend, w)["timing_cache"]


def test_guard_accepted_timing_cache_is_merged_back(knobs: Knobs, store: LatencyStore) -> None:
    """Guard (passes before and after): the shared entries and the new ones both end up in the file."""
    backend, w = TensorRTBackend(), workload()
    path = backend.timing_cache_path()
    path.write_bytes(b"old-tactic")
    assert measure_or_get(SPEC, w, backend, store).error is None
    assert set(path.read_bytes().decode().split(",")) == {"old-tactic", NEW_TACTIC}
