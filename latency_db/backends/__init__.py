"""Backends by name, and ``auto``: the first available of tensorrt, torch-cuda, onnxruntime, torch-cpu."""

from __future__ import annotations

from latency_db.backends.base import Backend, BuildError, Protocol, RawMeasurement
from latency_db.backends.onnxruntime import OnnxRuntimeBackend
from latency_db.backends.tensorrt import TensorRTBackend
from latency_db.backends.torch_cpu import TorchCpuBackend
from latency_db.backends.torch_cuda import TorchCudaBackend
from search_spaces.errors import UsageError
from search_spaces.registry import Registry

BACKENDS: Registry[type[Backend]] = Registry("backend")
for _cls in (TensorRTBackend, TorchCudaBackend, OnnxRuntimeBackend, TorchCpuBackend):  # the order ``auto`` tries
    BACKENDS.register(_cls.name)(_cls)
BACKEND_NAMES = BACKENDS.names()


class BackendError(UsageError, ValueError):
    """A backend name that is unknown, or a backend that cannot run on this machine."""


def get_backend(name: str, **options: object) -> Backend:
    """A backend instance by name ('auto' resolves); ``options`` go to its constructor (protocol, ...)."""
    if name == "auto":
        return resolve_backend("auto", **options)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: choose one of auto, {', '.join(BACKEND_NAMES)}")
    try:
        return BACKENDS.get(name)(**options)
    except ValueError as exc:  # a bad setting (protocol, NAS_TRT_OPT_LEVEL): the user's to fix
        raise BackendError(str(exc)) from None


def resolve_backend(name: str = "auto", **options: object) -> Backend:
    """'auto' -> the first available backend; a named one must be available here."""
    if name != "auto":
        backend = get_backend(name, **options)
        if not backend.available():
            raise BackendError(f"backend {name!r} is not available on this machine")
        return backend
    for cls in BACKENDS.values():
        if cls.available():
            return cls(**options)
    raise BackendError(f"none of the backends {', '.join(BACKEND_NAMES)} is available")


__all__ = [
    "BACKENDS",
    "BACKEND_NAMES",
    "Backend",
    "BackendError",
    "BuildError",
    "Protocol",
    "RawMeasurement",
    "get_backend",
    "resolve_backend",
]
