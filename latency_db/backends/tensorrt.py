"""TensorRT: an fp16 engine from the fp16 ONNX graph, timed trtexec-style.

Works with TensorRT 10.x and 11.x. Every network is created strongly typed (the flag exists since
10.0 and is ignored on 11, where every network is strongly typed) and the FP16 builder flag is never
set: precision comes from the ONNX graph's types, so an fp32 workload gets fp32 kernels on every
version. One ``trt.Builder`` per process; builder optimization level 3 by default (never 0, which
ignores the timing cache); one timing-cache file per (TensorRT version, GPU model, CUDA version),
loaded before each build and merged back under a file lock afterwards, never with
``ignore_mismatch``, and never overwritten by a cache that TensorRT rejected. TensorRT is imported
only inside this module's functions.

TensorRT reports most failures by a return value, not an exception; they are checked here the way
trtexec and Polygraphy check them. ``execute_async_v3`` or ``set_tensor_address`` returning False
raises (a failed launch is never timed as an empty stream). A failure that may not recur (no
execution context or no deserialized engine: usually out of GPU memory) raises a plain
RuntimeError, which ``measure_row`` does not cache; only a ``BuildError`` is a cached verdict.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from latency_db.backends.base import Backend, BuildError, Protocol, Session, export_graph
from latency_db.backends.cuda_timing import GPU_PROTOCOLS, cuda_event_timing
from latency_db.candidates import Candidate
from latency_db.fingerprint import digest, gpu_fingerprint
from latency_db.paths import cache_dir
from latency_db.workload import Workload

_BUILDER: dict[str, Any] = {}  # one trt.Builder (and its logger) per process, made on first use


def _trt() -> Any:
    import tensorrt

    return tensorrt


def trt_version() -> tuple[int, int]:
    major, minor = _trt().__version__.split(".")[:2]
    return int(major), int(minor)


def enqueue(context: Any, stream_handle: int) -> None:
    """One ``execute_async_v3`` on ``stream_handle``. TensorRT signals a failed launch, and a launch
    that breaks a CUDA graph capture, only by returning False: raise, so that capture falls back to
    plain launches and a failed launch is an (uncached) error rather than an empty stream timed."""
    if not context.execute_async_v3(stream_handle):
        raise RuntimeError("TensorRT execute_async_v3 returned False (launch failed, or not capturable)")


def _builder() -> tuple[Any, Any]:
    if not _BUILDER:
        trt = _trt()

        class CollectingLogger(trt.ILogger):
            """Keeps error messages so a failed build is cached with its reason."""

            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                    self.errors.append(msg)

        logger = CollectingLogger()
        _BUILDER.update(builder=trt.Builder(logger), logger=logger)
    return _BUILDER["builder"], _BUILDER["logger"]


class _TrtSession(Session):
    def __init__(self, engine: Any, workload: Workload, build_details: dict[str, Any]) -> None:
        import torch

        trt = _trt()
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:  # the static strategy allocates device memory here: usually out of memory
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        dtypes = {trt.DataType.HALF: torch.float16, trt.DataType.FLOAT: torch.float32}
        self.buffers = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            tensor = torch.rand(shape, device="cuda").to(dtypes[engine.get_tensor_dtype(name)])
            if not self.context.set_tensor_address(name, tensor.data_ptr()):
                raise RuntimeError(f"TensorRT set_tensor_address({name!r}) returned False")
            self.buffers.append(tensor)
        self.stream = torch.cuda.Stream()
        self.build_details = build_details
        self.details: dict[str, Any] = {}

    def time(self, protocol: Protocol) -> list[float]:
        samples, timing = cuda_event_timing(
            lambda: enqueue(self.context, self.stream.cuda_stream), self.stream, protocol)
        self.details = {**self.build_details, **timing}
        return samples

    def close(self) -> None:
        import torch

        del self.context, self.engine, self.buffers
        torch.cuda.empty_cache()


class TensorRTBackend(Backend):
    name = "tensorrt"
    is_gpu = True
    default_io_dtype = "fp16"
    protocols = GPU_PROTOCOLS
    quant_scheme = "trt"  # explicit quantization: symmetric int8 activations (zero points of 0), built strongly typed

    def __init__(self, protocol: str = "fast", opt_level: int | None = None, workspace_mib: int = 4096) -> None:
        super().__init__(protocol)
        given = str(opt_level) if opt_level is not None else os.environ.get("NAS_TRT_OPT_LEVEL", "3")
        if given.strip() not in ("1", "2", "3", "4", "5"):  # the CLI's way to set it: NAS_TRT_OPT_LEVEL
            raise ValueError(f"TensorRT builder optimization level (NAS_TRT_OPT_LEVEL) must be 1..5, got {given!r} "
                             "(0 picks the first tactic and ignores the timing cache)")
        opt_level = int(given)
        self.opt_level = opt_level
        self.workspace_mib = workspace_mib

    @classmethod
    def available(cls) -> bool:
        if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("torch") is None:
            return False
        import torch

        return torch.cuda.is_available()

    def version(self) -> str:
        return _trt().__version__

    def _device_fingerprint(self) -> dict[str, Any]:
        import torch

        return gpu_fingerprint(torch.cuda.current_device())

    def builder_settings(self, workload: Workload) -> dict[str, Any]:
        # Keyed as before: rows built strongly typed without the FP16 flag (10.12+, 11) keep their keys.
        return {"opt_level": self.opt_level, "workspace_mib": self.workspace_mib,
                "strongly_typed": True, "fp16_flag": False}

    def timing_cache_path(self) -> Path:
        """One file per (exact TensorRT version, GPU model, CUDA version)."""
        key = self.fingerprint()["key"]
        name = digest([self.version(), key["gpu_name"], key["cuda_runtime"]])[:16]
        folder = cache_dir() / "trt_timing"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.cache"

    def _open(self, spec: Candidate, workload: Workload) -> Session:
        trt = _trt()
        # the float graph, or (int8) its QDQ form: explicit quantization, no precision flag (strongly typed)
        graph = self.graph(spec, workload) if self.quantized else export_graph(spec, workload)
        builder, logger = _builder()
        logger.errors.clear()
        network = builder.create_network(self._network_flags(trt))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(graph):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BuildError(f"TensorRT ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mib * 2**20)
        config.builder_optimization_level = self.opt_level  # no precision flag: the graph's types decide
        plan, cache_note = self._build_with_timing_cache(builder, network, config)
        if plan is None:
            raise BuildError("TensorRT engine build failed: " + ("; ".join(logger.errors) or "no reason logged"))
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if engine is None:  # a plan this process just built: not a verdict on the candidate, so not cached
            raise RuntimeError("TensorRT could not deserialize the engine it built (out of GPU memory?): "
                               + ("; ".join(logger.errors) or "no reason logged"))
        return _TrtSession(engine, workload, {"timing_cache": cache_note})

    @staticmethod
    def _network_flags(trt: Any) -> int:
        """Strongly typed on every version: the flag exists from 10.0 on; 11 may drop it (always strong)."""
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if flag is not None:
            return 1 << int(flag)
        if trt_version() >= (11, 0):
            return 0
        raise RuntimeError(f"TensorRT {trt.__version__} cannot build strongly typed networks (needs 10.0+)")

    def _build_with_timing_cache(self, builder: Any, network: Any, config: Any) -> tuple[Any, str]:
        """Build with the shared timing cache loaded, then merge the new entries back to disk. Returns
        the plan (None when the build failed) and what became of the shared cache, for the row's details.
        The shared file is replaced only by a cache that holds all of it (TensorRT accepted it)."""
        from filelock import FileLock

        path = self.timing_cache_path()
        lock = FileLock(f"{path}.lock")
        with lock:
            data = path.read_bytes() if path.exists() else b""
        cache = config.create_timing_cache(data)
        note = "shared" if data else "new"
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            note = "shared file rejected by TensorRT, built without it"
            cache = config.create_timing_cache(b"")
            if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
                raise RuntimeError("TensorRT refused an empty timing cache")
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            return None, note
        local = config.get_timing_cache()
        if local is None:
            return plan, f"{note}; not saved: TensorRT returned no timing cache after the build"
        with lock:
            if path.exists():
                on_disk = config.create_timing_cache(path.read_bytes())
                if on_disk is None or not local.combine(on_disk, False):
                    return plan, f"{note}; not saved: TensorRT would not merge the shared file (left as is)"
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "wb") as fh:
                fh.write(memoryview(local.serialize()))
            os.replace(tmp, path)
        return plan, note
