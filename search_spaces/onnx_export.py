"""ONNX export of a built network at a fixed shape, in fp32 or in true fp16.

TensorRT 11 networks are always strongly typed and have no fp16 builder flag, so an fp16 engine
needs fp16 in the graph itself: fp16 weights and fp16 inputs and outputs, not a cast at the edges.
"""

from __future__ import annotations

import copy
import io
import os
import warnings

import torch
from torch import nn

ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "output"


def graph_bytes(model: nn.Module, shape: tuple[int, ...], *, fp16: bool = False, check: bool = True,
                dynamic: bool = False) -> bytes:
    """The ONNX graph of ``model`` for an input of ``shape`` (N, C, H, W): the one exporter.

    The model is deep-copied, so the caller's weights and dtype are untouched. fp16 gives a true
    fp16 graph (weights, inputs and outputs). ``check`` runs ``onnx.checker`` on the result. ``dynamic``
    leaves height and width free (for validating one graph on frames of several sizes; never timed).
    """
    net = copy.deepcopy(model).eval()
    dtype = torch.float16 if fp16 else torch.float32
    net = net.to(dtype=dtype, device="cpu")
    example = torch.rand(*shape, dtype=dtype)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter is 20x faster than the dynamo one on these small graphs, and the
        # search exports every candidate it measures.
        torch.onnx.export(
            net, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
            dynamic_axes={INPUT_NAME: {2: "height", 3: "width"}, OUTPUT_NAME: {2: "out_height", 3: "out_width"}}
            if dynamic else None,
        )
    data = buffer.getvalue()
    if check:
        import onnx  # imported here: only checking needs it

        onnx.checker.check_model(onnx.load_from_string(data))
    return data


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str] | None,
    height: int,
    width: int,
    *,
    fp16: bool = False,
    batch: int = 1,
) -> bytes:
    """Export ``model`` for an input of (batch, 3, height, width); returns the checked graph.

    With ``path`` given the bytes are also written there (atomically).
    """
    data = graph_bytes(model, (batch, 3, height, width), fp16=fp16)
    if path is not None:
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return data
