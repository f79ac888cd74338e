"""MACs, parameters and bytes moved of a spec, summed over its plan (search_spaces/plan.py; no torch).

The numbers feed the roofline lower bound, max(FLOPs / peak, bytes / bandwidth), and the report.
Bytes moved count each op reading its inputs and weights and writing its output once: the
traffic of an unfused implementation, an upper bound on what a fusing backend moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.plan import plan
from search_spaces.spec import ArchSpec


@dataclass(frozen=True)
class Counts:
    macs: int            # multiply-accumulates for one frame batch
    params: int          # trainable parameters (weights + biases)
    activation_bytes: int  # activation reads + writes, at ``bytes_per_element``
    weight_bytes: int    # each weight read once

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def bytes_moved(self) -> int:
        return self.activation_bytes + self.weight_bytes


def count(spec: ArchSpec, height: int, width: int, batch: int = 1, bytes_per_element: int = 2) -> Counts:
    """Counts for an input of (batch, 3, height, width); fp16 activations by default."""
    ops = plan(spec, height, width)
    params = sum(op.params for op in ops)
    return Counts(macs=batch * sum(op.macs for op in ops), params=params,
                  activation_bytes=batch * sum(op.moved for op in ops) * bytes_per_element,
                  weight_bytes=params * bytes_per_element)
