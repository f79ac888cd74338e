"""Precisions (fp32, fp16, int8): parsing ``--precision``, what each backend offers, and a backend set to one.

fp32 and fp16 are the graph's own types (the workload's IO dtype: ``onnx_export`` writes a true fp16 graph).
int8 is the float graph quantized into an explicit QDQ graph (search_spaces/onnx_quant.py) with fp32 inputs
and outputs: ONNX Runtime runs its int8 kernels on it, TensorRT builds it strongly typed with no precision flag
(explicit quantization, docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/
quantized-types-explicit-quantization.html). A backend's default precision keeps the keys it always had.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING

from search_spaces.errors import UsageError

if TYPE_CHECKING:
    from latency_db.backends import Backend
    from latency_db.workload import Workload

PRECISIONS = ("fp32", "fp16", "int8")
OFFERED: dict[str, tuple[str, ...]] = {  # backend name -> the precisions it can time
    "onnxruntime": ("fp32", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
    "torch-cuda": ("fp32", "fp16"),
    "torch-cpu": ("fp32",),
}


class PrecisionError(UsageError, ValueError):
    """A --precision value that is not a precision, or one the backend cannot run."""


def parse_precisions(text: str) -> tuple[str, ...]:
    """``fp32``, ``int8`` or a comma list (``fp32,int8``) -> the precisions in the order given, without repeats."""
    names = [p.strip().lower() for p in text.split(",")]
    bad = [p for p in names if p not in PRECISIONS]
    if not text.strip() or bad:
        raise PrecisionError(f"--precision takes {', '.join(PRECISIONS)} or a comma list of them (fp32,int8), "
                             f"got {text!r}")
    return tuple(dict.fromkeys(names))


def check_offered(backend: str, precisions: tuple[str, ...]) -> None:
    """Raise PrecisionError (one line, exit 2) when ``backend`` cannot run one of ``precisions``."""
    offered = OFFERED.get(backend, ())
    missing = [p for p in precisions if p not in offered]
    if missing:
        raise PrecisionError(f"backend {backend} has no {', '.join(missing)} (it offers {', '.join(offered)})")


def default_precision(backend: Backend) -> str:
    """The precision a backend times in when none is asked for: its default IO dtype."""
    return backend.default_io_dtype


def io_dtype_of(precision: str) -> str:
    """The graph's input and output dtype at a precision (an int8 QDQ graph takes and gives fp32)."""
    return "fp16" if precision == "fp16" else "fp32"


def at_precision(backend: Backend, workload: Workload, precision: str) -> tuple[Backend, Workload]:
    """``backend`` and ``workload`` set to time ``precision``: the workload's IO dtype, and for int8 a copy of the
    backend that times the quantized graph (the copy shares nothing mutable that matters: its fingerprint)."""
    check_offered(backend.name, (precision,))
    set_to = copy.copy(backend)
    set_to.quantized = precision == "int8"
    set_to.default_io_dtype = io_dtype_of(precision)  # what the callers that build workloads from a backend read
    return set_to, replace(workload, io_dtype=io_dtype_of(precision))
