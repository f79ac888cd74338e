"""PyTorch eager on the CPU (inference mode, threads = physical cores): the fallback backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from latency_db.backends.base import HostSession, Session
from latency_db.backends.cpu import CpuBackend
from latency_db.candidates import Candidate, build_module
from latency_db.workload import Workload


class _TorchCpuSession(HostSession):
    def __init__(self, model: Any, x: Any, threads: int) -> None:
        self.model, self.x, self.threads = model, x, threads
        self.details = {"threads": threads}

    def run_once(self) -> None:
        import torch

        with torch.inference_mode():
            self.model(self.x)

    @contextmanager
    def timing(self) -> Iterator[None]:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


class TorchCpuBackend(CpuBackend):
    name = "torch-cpu"
    library = "torch"

    def builder_settings(self, workload: Workload) -> dict[str, Any]:
        return {"mode": "eager", "inference_mode": True, "memory_format": "contiguous", "threads": self.threads}

    def _open(self, spec: Candidate, workload: Workload) -> Session:
        import torch

        dtype = torch.float16 if workload.io_dtype == "fp16" else torch.float32
        model = build_module(spec).to(dtype=dtype)
        x = torch.rand(*workload.shape, generator=torch.Generator().manual_seed(0)).to(dtype)
        return _TorchCpuSession(model, x, self.threads)
