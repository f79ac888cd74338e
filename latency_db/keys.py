"""The latency cache key (docs/latency.md): what a measured latency is only true for.

arch_id; workload (N, C, H, W, scale, IO dtype, layout); precision; backend name and exact version;
builder settings; device fingerprint key (GPU name, compute capability, SM count, memory, MIG,
driver, CUDA runtime, clock regime; or CPU model name, vendor/family/model/stepping, the ISA flags
kernels are dispatched on, cache sizes, cores, threads); protocol version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latency_db.fingerprint import canonical, digest
from latency_db.workload import Workload

if TYPE_CHECKING:
    from latency_db.backends import Backend
    from latency_db.candidates import Candidate


@dataclass(frozen=True)
class LatencyKey:
    arch_id: str
    workload: Workload
    precision: str
    backend: str
    backend_version: str
    builder: str   # canonical JSON of the builder settings
    device: str    # canonical JSON of the device fingerprint's key fields
    protocol: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch_id": self.arch_id, "workload": self.workload.to_dict(), "precision": self.precision,
            "backend": self.backend, "backend_version": self.backend_version,
            "builder": json.loads(self.builder), "device": json.loads(self.device), "protocol": self.protocol,
        }

    def to_json(self) -> str:
        return canonical(self.to_dict())

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON: the unique column rows are inserted-or-ignored on."""
        return digest(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> LatencyKey:
        d = json.loads(text)
        return cls(arch_id=d["arch_id"], workload=Workload.from_dict(d["workload"]), precision=d["precision"],
                   backend=d["backend"], backend_version=d["backend_version"], builder=canonical(d["builder"]),
                   device=canonical(d["device"]), protocol=d["protocol"])


GRAPH_ID_PREFIX = "onnx-"


def graph_id(data: bytes) -> str:
    """The arch_id of a user's ONNX graph (a ``--baseline``): its file's content, so a renamed copy hits the
    same rows and an edited graph misses them."""
    return GRAPH_ID_PREFIX + hashlib.sha256(data).hexdigest()


def latency_key(spec: Candidate, workload: Workload, backend: Backend) -> LatencyKey:
    """The key of ``spec`` timed under ``workload`` on ``backend``; an int8 (quantized) backend adds its
    quantization recipe to the builder settings (fp32 and fp16 keys are as they always were)."""
    fp = backend.fingerprint()
    builder = backend.builder_settings(workload)
    if backend.quantized:
        from search_spaces.onnx_quant import quant_settings

        builder = {**builder, "quantization": quant_settings(backend.quant_scheme)}
    return LatencyKey(
        arch_id=spec.arch_id, workload=workload, precision=backend.precision(workload), backend=backend.name,
        backend_version=fp["backend_version"], builder=canonical(builder),
        device=canonical(fp["key"]), protocol=backend.protocol.name,
    )


def device_template(backend: Backend) -> dict[str, Any]:
    """The key's fields a backend fixes (all but arch_id and workload), for an agent to publish: a search on
    another machine looks its rows up by them. No backend's builder settings depend on the workload, so they
    are taken at a nominal one (should one ever, a lookup misses and the agent answers from its own key)."""
    fp = backend.fingerprint()
    nominal = Workload(height=8, width=8, io_dtype=backend.default_io_dtype)
    return {"backend": backend.name, "backend_version": fp["backend_version"],
            "builder": json.loads(canonical(backend.builder_settings(nominal))), "device": fp["key"],
            "protocol": backend.protocol.name, "io_dtype": backend.default_io_dtype}


def key_from_template(template: dict[str, Any], arch_id: str, workload: Workload) -> LatencyKey:
    """The latency key of ``arch_id`` under ``workload`` on the device a template describes."""
    return LatencyKey(arch_id=arch_id, workload=workload, precision=workload.io_dtype, backend=template["backend"],
                      backend_version=template["backend_version"], builder=canonical(template["builder"]),
                      device=canonical(template["device"]), protocol=template["protocol"])
