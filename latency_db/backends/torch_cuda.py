"""PyTorch on a CUDA GPU: fp16, channels_last, cudnn.benchmark during warm-up, CUDA graphs, events."""

from __future__ import annotations

from typing import Any

from latency_db.backends.base import Backend, Protocol, Session
from latency_db.backends.cuda_timing import GPU_PROTOCOLS, cuda_event_timing
from latency_db.candidates import Candidate, build_module
from latency_db.fingerprint import gpu_fingerprint, library_version
from latency_db.workload import Workload


class _TorchCudaSession(Session):
    def __init__(self, model: Any, x: Any) -> None:
        import torch

        self.model, self.x = model, x
        self.stream = torch.cuda.Stream(device=x.device)
        self.details: dict[str, Any] = {}

    def time(self, protocol: Protocol) -> list[float]:
        import torch

        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # autotune convolutions during the warm-up launches
        try:
            with torch.inference_mode():
                samples, self.details = cuda_event_timing(lambda: self.model(self.x), self.stream, protocol)
        finally:
            torch.backends.cudnn.benchmark = previous
        return samples

    def close(self) -> None:
        import torch

        del self.model, self.x
        torch.cuda.empty_cache()


class TorchCudaBackend(Backend):
    name = "torch-cuda"
    is_gpu = True
    default_io_dtype = "fp16"
    protocols = GPU_PROTOCOLS

    def __init__(self, protocol: str = "fast", device_index: int = 0) -> None:
        super().__init__(protocol)
        self.device_index = device_index

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return False
        import torch

        return torch.cuda.is_available()

    def version(self) -> str:
        import torch

        return f"{library_version('torch')} cudnn {torch.backends.cudnn.version()}"

    def _device_fingerprint(self) -> dict[str, Any]:
        return gpu_fingerprint(self.device_index)

    def builder_settings(self, workload: Workload) -> dict[str, Any]:
        return {"memory_format": "channels_last", "cudnn_benchmark": True, "cuda_graph": "when capturable"}

    def _open(self, spec: Candidate, workload: Workload) -> Session:
        import torch

        dtype = torch.float16 if workload.io_dtype == "fp16" else torch.float32
        device = torch.device("cuda", self.device_index)
        model = build_module(spec).to(device=device, dtype=dtype, memory_format=torch.channels_last)
        x = torch.rand(*workload.shape, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        return _TorchCudaSession(model, x)
