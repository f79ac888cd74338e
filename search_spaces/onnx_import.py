"""An ONNX graph as a trainable PyTorch module: the mirror of onnx_export.py, for the user's own baseline nets.

Covers the operators real-time SR and enhancement nets are made of (convolutions and transposed ones,
ReLU / PReLU / LeakyReLU / sigmoid / tanh / clip, elementwise arithmetic, depth-to-space and back,
resizing, concatenation, casts). Convolution and PReLU weights become parameters; every other constant
is a buffer. Anything else raises ``ConversionError`` naming the operator: the baseline is then shown as
the user has it, not retrained. (onnx2torch would cover more, but it needs torchvision, whose registry
wheels load only against a CUDA build of torch; docs/training.md.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.errors import NasError


class ConversionError(NasError):
    """The graph holds something this converter cannot turn into a PyTorch module."""


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(pads: list[int]) -> tuple[int, int, int, int]:
    """ONNX 2-D pads (top, left, bottom, right) as F.pad's (left, right, top, bottom)."""
    top, left, bottom, right = pads
    return (left, right, top, bottom)


class _Conv(nn.Module):
    """Conv or ConvTranspose with ONNX's possibly asymmetric padding applied first (Conv only)."""

    def __init__(self, conv: nn.Module, pad: tuple[int, int, int, int] | None) -> None:
        super().__init__()
        self.conv, self.pad = conv, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad) if self.pad else x)


def depth_to_space(x: torch.Tensor, block: int, mode: str) -> torch.Tensor:
    """ONNX DepthToSpace: CRD is torch's pixel shuffle; DCR takes the block index before the channel."""
    if mode == "CRD":
        return F.pixel_shuffle(x, block)
    n, c, h, w = x.shape
    y = x.reshape(n, block, block, c // (block * block), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (block * block), h * block, w * block)


def space_to_depth(x: torch.Tensor, block: int) -> torch.Tensor:
    """ONNX SpaceToDepth (block index before the channel, as DCR)."""
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * block * block, h // block, w // block)


BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div,
}
UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Identity": lambda x: x,
}


def _reshape(x: torch.Tensor, shape: torch.Tensor, **_: Any) -> torch.Tensor:
    dims = [x.shape[i] if int(d) == 0 else int(d) for i, d in enumerate(shape.tolist())]
    return x.reshape(dims)


def _binary(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
            **_: Any) -> torch.Tensor:
    return f(x, y)


def _unsqueeze(x: torch.Tensor, axes: torch.Tensor | None = None, **a: Any) -> torch.Tensor:
    for axis in sorted(int(v) for v in (axes.tolist() if axes is not None else a["axes"])):
        x = x.unsqueeze(axis)
    return x


FOLD: dict[str, Callable[..., torch.Tensor]] = {  # operators evaluated once when every input is a constant
    "Identity": lambda x, **_: x, "Cast": lambda x, **_: x, "Reshape": _reshape, "Unsqueeze": _unsqueeze,
    **{op: functools.partial(_binary, f) for op, f in BINARY.items()},
}
RESIZE_MODES = {"nearest": "nearest", "linear": "bilinear", "cubic": "bicubic"}


class OnnxModule(nn.Module):
    """Runs the converted nodes in the graph's (topological) order; one input, one output, NCHW."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        self.consts: dict[str, torch.Tensor] = {
            t.name: torch.from_numpy(numpy_helper.to_array(t).copy()).float() for t in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ConversionError(f"a graph of {len(inputs)} inputs and {len(graph.output)} outputs (one of each)")
        self.input_name, self.output_name = inputs[0], graph.output[0].name
        self.layers = nn.ModuleDict()
        self.steps: list[tuple[str, list[str], list[str], dict[str, Any]]] = []
        for index, node in enumerate(graph.node):
            self._add(f"n{index}", node)
        for i, value in enumerate(self.consts.values()):  # the constants the steps read, as buffers
            self.register_buffer(f"c{i}", value)
        self.const_names = {name: f"c{i}" for i, name in enumerate(self.consts)}

    def _const(self, name: str, op: str) -> torch.Tensor:
        if name not in self.consts:
            raise ConversionError(f"{op} needs a constant input {name!r} that is computed in the graph")
        return self.consts[name]

    def _add(self, key: str, node: Any) -> None:
        from onnx import numpy_helper

        op, a, ins, outs = node.op_type, _attrs(node), list(node.input), list(node.output)
        if op == "Constant":
            if "value" not in a:
                raise ConversionError("a Constant without a tensor value")
            self.consts[outs[0]] = torch.from_numpy(numpy_helper.to_array(a["value"]).copy()).float()
            return
        if op in FOLD and all(i in self.consts for i in ins if i):  # computed from constants alone: a constant
            self.consts[outs[0]] = FOLD[op](*[self.consts[i] for i in ins if i], **a)
            return
        if op in ("Conv", "ConvTranspose"):
            self.layers[key] = self._conv(op, a, ins)
        elif op == "PRelu":
            slope = self._const(ins[1], op).flatten()
            prelu = nn.PReLU(slope.numel())
            prelu.weight.data.copy_(slope)
            self.layers[key] = prelu
        elif op not in (*BINARY, *UNARY, "LeakyRelu", "Clip", "DepthToSpace", "SpaceToDepth", "Resize", "Concat",
                        "Cast"):
            raise ConversionError(f"the operator {op} is not converted")
        if op == "Resize":
            mode = _text(a.get("mode", b"nearest"))
            scales = self._const(ins[2], op) if len(ins) > 2 and ins[2] else None
            if mode not in RESIZE_MODES or scales is None or scales.numel() != 4:
                raise ConversionError(f"Resize with mode {mode} and no 4 constant scales")
            a = {"mode": RESIZE_MODES[mode], "scale": (float(scales[2]), float(scales[3])),
                 "align": _text(a.get("coordinate_transformation_mode", b"half_pixel")) == "align_corners"}
        self.steps.append((op, ins, outs, {**a, "key": key}))

    def _conv(self, op: str, a: dict[str, Any], ins: list[str]) -> nn.Module:
        weight = self._const(ins[1], op)
        bias = self._const(ins[2], op) if len(ins) > 2 and ins[2] else None
        if weight.dim() != 4 or _text(a.get("auto_pad", b"NOTSET")) != "NOTSET":
            raise ConversionError(f"{op} that is not 2-D with explicit pads")
        group, strides = int(a.get("group", 1)), tuple(a.get("strides", (1, 1)))
        dilations, pads = tuple(a.get("dilations", (1, 1))), list(a.get("pads", (0, 0, 0, 0)))
        k = tuple(weight.shape[2:])
        if op == "Conv":
            conv: nn.Module = nn.Conv2d(weight.shape[1] * group, weight.shape[0], k, strides, 0, dilations, group,
                                        bias is not None)
            pad = None if not any(pads) else _pairs(pads)
        else:
            if pads[:2] != pads[2:]:
                raise ConversionError("ConvTranspose with asymmetric pads")
            conv = nn.ConvTranspose2d(weight.shape[0], weight.shape[1] * group, k, strides, tuple(pads[:2]),
                                      tuple(a.get("output_padding", (0, 0))), group, bias is not None, dilations)
            pad = None
        conv.weight.data.copy_(weight)
        if bias is not None:
            conv.bias.data.copy_(bias)
        return _Conv(conv, pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {self.input_name: x}

        def get(name: str) -> torch.Tensor:
            return values[name] if name in values else getattr(self, self.const_names[name])

        for op, ins, outs, a in self.steps:
            if op in ("Conv", "ConvTranspose", "PRelu"):
                y = self.layers[a["key"]](get(ins[0]))
            elif op in BINARY:
                y = BINARY[op](get(ins[0]), get(ins[1]))
            elif op in UNARY:
                y = UNARY[op](get(ins[0]))
            elif op == "LeakyRelu":
                y = F.leaky_relu(get(ins[0]), float(a.get("alpha", 0.01)))
            elif op == "Clip":
                lo = float(get(ins[1])) if len(ins) > 1 and ins[1] else float(a.get("min", -3.4e38))
                hi = float(get(ins[2])) if len(ins) > 2 and ins[2] else float(a.get("max", 3.4e38))
                y = get(ins[0]).clamp(lo, hi)
            elif op == "DepthToSpace":
                y = depth_to_space(get(ins[0]), int(a["blocksize"]), _text(a.get("mode", b"DCR")))
            elif op == "SpaceToDepth":
                y = space_to_depth(get(ins[0]), int(a["blocksize"]))
            elif op == "Resize":
                y = F.interpolate(get(ins[0]), scale_factor=a["scale"], mode=a["mode"],
                                  align_corners=a["align"] if a["mode"] != "nearest" else None)
            elif op == "Concat":
                y = torch.cat([get(i) for i in ins], dim=int(a["axis"]))
            else:  # Cast: the module computes in the dtype it is given
                y = get(ins[0])
            values[outs[0]] = y
        return values[self.output_name]


def to_module(data: bytes) -> OnnxModule:
    """The ONNX graph ``data`` as a module holding its weights (fp32); ConversionError when it does not convert."""
    import onnx

    return OnnxModule(onnx.load_from_string(data))
