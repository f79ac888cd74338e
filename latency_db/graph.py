"""A user's own ONNX graph as a candidate (``--baseline``): timed as it is, keyed by its file's content.

The graph is measured with the search's protocol on the same backends as the search's candidates. Its
input dimensions are fixed to the workload's (batch 1, the search's input size); the output shape follows.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from latency_db.keys import graph_id
from latency_db.workload import Workload
from search_spaces import Counts

if TYPE_CHECKING:
    from torch import nn

FIXED_CACHE = 8  # graphs fixed to a shape, kept in memory


@dataclass(frozen=True)
class OnnxGraph:
    """An ONNX file's bytes, the channels it takes and gives (3 RGB or 1 luma), its scale and IO dtype."""

    data: bytes = field(repr=False)
    channels: int
    scale: int
    io_dtype: str
    name: str = "baseline"
    _fixed: OrderedDict[tuple[int, ...], bytes] = field(default_factory=OrderedDict, init=False, repr=False,
                                                        compare=False, hash=False)

    @property
    def arch_id(self) -> str:
        return graph_id(self.data)

    def summary(self) -> str:
        kind = "luma" if self.channels == 1 else "rgb"
        return f"ONNX baseline {self.name} ({kind}, x{self.scale}, {self.io_dtype})"

    def fixed(self, shape: tuple[int, ...]) -> bytes:
        """The graph with its input fixed to ``shape`` (N, C, H, W) and its output shape left to inference."""
        if shape not in self._fixed:
            self._fixed[shape] = fix_shape(self.data, shape)
            while len(self._fixed) > FIXED_CACHE:
                self._fixed.popitem(last=False)
        return self._fixed[shape]

    def build(self) -> nn.Module:
        """The graph as a torch module with its weights (for the torch backends); BuildError if it cannot."""
        from latency_db.backends.base import BuildError
        from search_spaces.onnx_import import ConversionError, to_module

        try:
            return to_module(self.data).eval()
        except ConversionError as exc:
            raise BuildError(f"the torch backends run the graph converted to PyTorch: {exc}") from exc

    def count(self, workload: Workload) -> Counts:
        """MACs of the convolutions, parameters of the initializers, bytes of the conv activations."""
        import onnx
        from onnx import numpy_helper

        model = onnx.shape_inference.infer_shapes(onnx.load_from_string(self.fixed(workload.shape)))
        g = model.graph
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                  for v in (*g.value_info, *g.input, *g.output)}
        weights = {t.name: numpy_helper.to_array(t).shape for t in g.initializer}
        macs = act = 0
        for node in g.node:
            if node.op_type not in ("Conv", "ConvTranspose") or node.input[1] not in weights:
                continue
            w = weights[node.input[1]]
            inp, out = shapes.get(node.input[0], []), shapes.get(node.output[0], [])
            n_in, n_out = _prod(inp), _prod(out)
            per = w[1] * w[2] * w[3]  # Conv: (out, in/g, k, k) per output; ConvTranspose: (in, out/g, k, k) per input
            macs += (n_out if node.op_type == "Conv" else n_in) * per
            act += n_in + n_out
        params = sum(_prod(list(s)) for s in weights.values())
        bpe = workload.bytes_per_element
        return Counts(macs=macs, params=params, activation_bytes=act * bpe, weight_bytes=params * bpe)


def _prod(dims: list[int]) -> int:
    out = 1
    for d in dims:
        out *= max(int(d), 0)
    return out


def fix_shape(data: bytes, shape: tuple[int, ...]) -> bytes:
    """``data`` with its one graph input's dimensions set to ``shape`` and every other inferred shape cleared."""
    import onnx

    model = onnx.load_from_string(data)
    inits = {t.name for t in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    for dim, value in zip(inp.type.tensor_type.shape.dim, shape, strict=True):
        dim.Clear()
        dim.dim_value = value
    for out in model.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            dim.Clear()
    del model.graph.value_info[:]
    return model.SerializeToString()
