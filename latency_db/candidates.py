"""What can be measured: an ArchSpec, a bare conv stack (the sweep's probe), or a user's ONNX graph.

All have an ``arch_id``, build into a torch module and count their MACs and bytes, which is all
a backend and the roofline need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latency_db.fingerprint import digest
from latency_db.graph import OnnxGraph
from latency_db.workload import Workload
from search_spaces import ArchSpec, Counts, count

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ConvProbe:
    """``layers`` C->C ``kernel`` x ``kernel`` conv+ReLU layers on an (N, C, H, W) input."""

    channels: int
    layers: int = 1
    kernel: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {"probe": "conv_stack", "channels": self.channels, "layers": self.layers, "kernel": self.kernel}

    @property
    def arch_id(self) -> str:
        return "probe-" + digest(self.to_dict())

    def summary(self) -> str:
        return f"probe {self.layers}x conv{self.kernel}x{self.kernel}/{self.channels}"

    def build(self) -> nn.Module:
        from torch import nn

        mods: list[nn.Module] = []
        for _ in range(self.layers):
            mods += [nn.Conv2d(self.channels, self.channels, self.kernel, padding=self.kernel // 2), nn.ReLU()]
        return nn.Sequential(*mods).eval()

    def count(self, height: int, width: int, batch: int, bytes_per_element: int) -> Counts:
        c, k = self.channels, self.kernel
        macs = self.layers * batch * height * width * c * c * k * k
        params = self.layers * (c * c * k * k + c)
        act = self.layers * 2 * batch * c * height * width * bytes_per_element
        return Counts(macs=macs, params=params, activation_bytes=act, weight_bytes=params * bytes_per_element)


Candidate = ArchSpec | ConvProbe | OnnxGraph


def build_module(spec: Candidate) -> nn.Module:
    """The untrained torch module, in eval mode."""
    if isinstance(spec, ArchSpec):
        from search_spaces import build

        return build(spec)
    return spec.build()


def counts_for(spec: Candidate, workload: Workload) -> Counts:
    """MACs, params and bytes at the workload's shape and IO element size."""
    if isinstance(spec, ArchSpec):
        return count(spec, workload.height, workload.width, batch=workload.batch,
                     bytes_per_element=workload.bytes_per_element)
    if isinstance(spec, OnnxGraph):
        return spec.count(workload)
    return spec.count(workload.height, workload.width, workload.batch, workload.bytes_per_element)


def check_workload(spec: Candidate, workload: Workload) -> None:
    """Raise ValueError when the workload cannot feed this candidate (channels, scale, tiling)."""
    if isinstance(spec, ArchSpec):
        expected_channels, expected_scale, multiple = 3, spec.scale, spec.size_multiple
    elif isinstance(spec, OnnxGraph):
        expected_channels, expected_scale, multiple = spec.channels, spec.scale, 1
    else:
        expected_channels, expected_scale, multiple = spec.channels, 1, 1
    if workload.channels != expected_channels:
        raise ValueError(f"workload has {workload.channels} input channels, the network takes {expected_channels}")
    if workload.scale != expected_scale:
        raise ValueError(f"workload scale is {workload.scale}, the network's is {expected_scale}")
    if workload.height % multiple or workload.width % multiple:
        raise ValueError(f"input size {workload.height}x{workload.width} is not a multiple of {multiple}, "
                         "which this network's space-to-depth and levels need")


def workload_for(spec: Candidate, height: int, width: int, io_dtype: str, batch: int = 1) -> Workload:
    """The workload that feeds ``spec`` at ``height`` x ``width`` (channels and scale from the spec)."""
    if isinstance(spec, ArchSpec):
        return Workload(height=height, width=width, scale=spec.scale, batch=batch, channels=3, io_dtype=io_dtype)
    if isinstance(spec, OnnxGraph):  # the graph's own channels and IO dtype
        return Workload(height=height, width=width, scale=spec.scale, batch=batch, channels=spec.channels,
                        io_dtype=spec.io_dtype)
    return Workload(height=height, width=width, scale=1, batch=batch, channels=spec.channels, io_dtype=io_dtype)
