"""TensorRT: an fp16 engine from the fp16 ONNX graph, timed trtexec-style.

Works with TensorRT 10.x and 11.x, detected at run time: the network is created strongly typed on
10.12+ (the flag is ignored on 11, where every network is strongly typed and ``BuilderFlag.FP16``
no longer exists); before 10.12 the FP16 builder flag is set instead. One ``trt.Builder`` per
process; builder optimization level 3 by default (never 0, which ignores the timing cache); one
timing-cache file per (TensorRT version, GPU model, CUDA version), loaded before each build and
merged back under a file lock afterwards, never with ``ignore_mismatch``. TensorRT is imported only
inside this module's functions.
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
    def __init__(self, engine: Any, workload: Workload) -> None:
        import torch

        trt = _trt()
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BuildError("TensorRT could not create an execution context (out of GPU memory?)")
        dtypes = {trt.DataType.HALF: torch.float16, trt.DataType.FLOAT: torch.float32}
        self.buffers = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            tensor = torch.rand(shape, device="cuda").to(dtypes[engine.get_tensor_dtype(name)])
            self.context.set_tensor_address(name, tensor.data_ptr())
            self.buffers.append(tensor)
        self.stream = torch.cuda.Stream()
        self.details: dict[str, Any] = {}

    def time(self, protocol: Protocol) -> list[float]:
        samples, self.details = cuda_event_timing(
            lambda: self.context.execute_async_v3(self.stream.cuda_stream), self.stream, protocol)
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

    @property
    def strongly_typed(self) -> bool:
        return trt_version() >= (10, 12)

    def builder_settings(self, workload: Workload) -> dict[str, Any]:
        return {"opt_level": self.opt_level, "workspace_mib": self.workspace_mib,
                "strongly_typed": self.strongly_typed, "fp16_flag": not self.strongly_typed}

    def timing_cache_path(self) -> Path:
        """One file per (exact TensorRT version, GPU model, CUDA version)."""
        key = self.fingerprint()["key"]
        name = digest([self.version(), key["gpu_name"], key["cuda_runtime"]])[:16]
        folder = cache_dir() / "trt_timing"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.cache"

    def _open(self, spec: Candidate, workload: Workload) -> Session:
        trt = _trt()
        graph = export_graph(spec, workload)
        builder, logger = _builder()
        logger.errors.clear()
        flags = 0
        if self.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(graph):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BuildError(f"TensorRT ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mib * 2**20)
        config.builder_optimization_level = self.opt_level
        if not self.strongly_typed:
            config.set_flag(trt.BuilderFlag.FP16)
        plan = self._build_with_timing_cache(builder, network, config)
        if plan is None:
            raise BuildError("TensorRT engine build failed: " + ("; ".join(logger.errors) or "no reason logged"))
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if engine is None:
            raise BuildError("TensorRT could not deserialize the engine: " + "; ".join(logger.errors))
        return _TrtSession(engine, workload)

    def _build_with_timing_cache(self, builder: Any, network: Any, config: Any) -> Any:
        """Build with the shared timing cache loaded, then merge the new entries back to disk."""
        from filelock import FileLock

        path = self.timing_cache_path()
        lock = FileLock(f"{path}.lock")
        with lock:
            data = path.read_bytes() if path.exists() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            return None
        with lock:
            local = config.get_timing_cache()
            if path.exists():
                local.combine(config.create_timing_cache(path.read_bytes()), False)
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "wb") as fh:
                fh.write(memoryview(local.serialize()))
            os.replace(tmp, path)
        return plan
