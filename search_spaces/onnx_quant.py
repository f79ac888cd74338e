"""Post-training quantization of an exported ONNX graph into an int8 QDQ graph (ONNX Runtime's quantize_static).

The float graph from ``onnx_export.graph_bytes`` goes in; a graph with QuantizeLinear/DequantizeLinear pairs around
every conv and every op between two convs comes out (QDQ format, per-channel symmetric weights, activations
calibrated by min/max over the inputs given); the classical base, the residual's sum and the output stay float. Two
schemes. ``ort``: uint8 asymmetric activations and weights in 7 bits, since ONNX Runtime's u8s8 kernels on AVX2 CPUs
without VNNI sum pairs of products in int16 (VPMADDUBSW) and saturate with full 8-bit weights (a trained ESPCN lost
0.11 dB of gain against 0.03 dB with 7-bit weights, whose optimized session then matched the exact QDQ arithmetic;
reports/int8.md). ``trt``: int8 symmetric activations and weights (TensorRT's explicit quantization takes only zero
points of 0).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from search_spaces.errors import NasError

QUANT_SCHEMES = ("ort", "trt")
QUANT_VERSION = 3  # bump when the quantization recipe below changes: it is part of the int8 latency and cache keys
# 2: every node quantizes its own copy of a shared initializer (``unshared_initializers``)
# 3: the nodes outside the conv body stay float (``float_ends``): trained nets lost 0.020 dB of gain to PTQ, was 0.041,
#    at 1.003-1.06x the int8 time (reports/int8.md, "Session 11")


class QuantizeError(NasError, RuntimeError):
    """ONNX Runtime could not quantize the graph."""


def quant_settings(scheme: str = "ort") -> dict[str, Any]:
    """What the quantized graph depends on besides the float graph and the calibration data (keyed for int8)."""
    if scheme not in QUANT_SCHEMES:
        raise ValueError(f"quantization scheme must be one of {', '.join(QUANT_SCHEMES)}, got {scheme!r}")
    weights = "int7" if scheme == "ort" else "int8"
    return {"format": "QDQ", "weights": f"{weights} per-channel symmetric",
            "activations": "uint8 asymmetric" if scheme == "ort" else "int8 symmetric",
            "calibration": "minmax", "ends": "float", "version": QUANT_VERSION}


def calibration_reader(inputs: Sequence[np.ndarray], name: str) -> Any:
    """ONNX Runtime's calibration data reader over ``inputs``, each fed as the graph input ``name`` (read once)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs: Iterator[np.ndarray] = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.inputs, None)
            return None if x is None else {name: np.ascontiguousarray(x, dtype=np.float32)}

    return Reader()


def unshared_initializers(graph: bytes) -> bytes:
    """``graph`` with every initializer read by one node only: a copy per reader, ``Identity`` aliases folded away.

    The exporter merges equal initializers, so an untrained net's zero biases become one tensor read by every conv
    of a width. The quantizer then quantizes that bias once, at the first conv's scale, and ONNX Runtime cannot fuse
    the other convs into QLinearConv: they run in float between Dequantize and Quantize nodes, and the int8 graph of
    ABPN took 2x its fp32 time (reports/int8.md, "Shared biases").
    """
    import onnx

    model = onnx.load_from_string(graph)
    body = model.graph
    tensors = {t.name: t for t in body.initializer}

    def copy_of(name: str, new_name: str) -> None:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensors[name])
        copy.name = new_name
        body.initializer.append(copy)
        tensors[new_name] = copy

    outputs = {o.name for o in body.output}
    aliases = [n for n in body.node if n.op_type == "Identity" and n.input[0] in tensors and n.output[0] not in outputs]
    for node in aliases:  # an Identity of an initializer becomes an initializer of its own under the output's name
        copy_of(node.input[0], node.output[0])
        body.node.remove(node)
    read: set[str] = set()
    for node in body.node:  # a second reader of one initializer reads its own copy
        for i, name in enumerate(node.input):
            if name in read:
                node.input[i] = f"{name}__{node.name or node.output[0]}_{i}"
                copy_of(name, node.input[i])
            elif name in tensors:
                read.add(name)
    return model.SerializeToString()


def float_ends(graph: bytes) -> list[str]:
    """Names of the nodes outside the conv body, which stay float: every node but the convs and what lies between two
    convs. The classical base (a Resize of the input), the residual's Add and the output then keep their float
    values: quantized to 8 bits over their calibrated ranges, they were about half of a trained net's post-training
    loss, and saved no work (they are not convolutions)."""
    import onnx

    nodes = list(onnx.load_from_string(graph).graph.node)
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            readers.setdefault(name, []).append(i)
    convs = {i for i, node in enumerate(nodes) if node.op_type == "Conv"}
    after: set[int] = set()  # nodes fed, at any distance, by a conv
    todo = [j for i in convs for out in nodes[i].output for j in readers.get(out, [])]
    while todo:
        i = todo.pop()
        if i not in after:
            after.add(i)
            todo += [j for out in nodes[i].output for j in readers.get(out, [])]
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    before: set[int] = set()  # nodes that feed, at any distance, a conv
    todo = [producer[name] for i in convs for name in nodes[i].input if name in producer]
    while todo:
        i = todo.pop()
        if i not in before:
            before.add(i)
            todo += [producer[name] for name in nodes[i].input if name in producer]
    body = convs | (after & before)
    return [node.name for i, node in enumerate(nodes) if i not in body and node.name]


def float_inputs(quantized: bytes, names: Sequence[str]) -> bytes:
    """``quantized`` with the nodes ``names`` reading the float tensors a Quantize/Dequantize pair rounds for another
    reader (ONNX Runtime hands every reader of a quantized tensor its rounded copy: a luma net's base would be
    upscaled from the rounded input). A conv's output stays rounded: its Quantize lets ONNX Runtime fuse the conv."""
    import onnx

    model = onnx.load_from_string(quantized)
    body = model.graph
    producer = {out: node for node in body.node for out in node.output}
    float_nodes = set(names)
    for node in body.node:
        if node.name not in float_nodes:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            source = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear" and (source is None or source.op_type != "Conv"):
                node.input[i] = q.input[0]
    while True:  # Quantize/Dequantize nodes nobody reads any more
        read = {name for node in body.node for name in node.input} | {o.name for o in body.output}
        orphans = [n for n in body.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   and not any(out in read for out in n.output)]
        if not orphans:
            return model.SerializeToString()
        for node in orphans:
            body.node.remove(node)


def quantize_graph(graph: bytes, calibration: Sequence[np.ndarray], scheme: str = "ort",
                   keep_float_ends: bool = True) -> bytes:
    """The int8 QDQ graph of the fp32 ONNX ``graph``, activations calibrated on ``calibration`` (N, C, H, W arrays
    the graph accepts), the nodes outside the conv body left float (``float_ends``) unless ``keep_float_ends`` is
    False (quantization version 2, kept for comparison). Deterministic for the same graph and inputs."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from search_spaces.onnx_export import INPUT_NAME

    quant_settings(scheme)  # a bad scheme is a ValueError before any work
    if not calibration:
        raise ValueError("quantization needs at least one calibration input")

    symmetric = scheme == "trt"
    with tempfile.TemporaryDirectory(prefix="nas-quant-") as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        graph = unshared_initializers(graph)
        excluded = float_ends(graph) if keep_float_ends else None
        with open(src, "wb") as fh:
            fh.write(graph)
        logging.disable(logging.WARNING)  # ONNX Runtime's quantizer warns on the root logger about every bias
        try:
            quantize_static(src, dst, calibration_reader(calibration, INPUT_NAME), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=not symmetric,
                            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            nodes_to_exclude=excluded,
                            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})
        except Exception as exc:  # onnxruntime raises many types; all mean "cannot quantize"
            raise QuantizeError(f"int8 quantization failed: {type(exc).__name__}: {exc}") from exc
        finally:
            logging.disable(logging.NOTSET)
        with open(dst, "rb") as fh:
            quantized = fh.read()
    return quantized if excluded is None else float_inputs(quantized, excluded)


def qdq_ops(graph: bytes) -> dict[str, int]:
    """How many QuantizeLinear and DequantizeLinear nodes ``graph`` holds (what makes it an int8 graph)."""
    import onnx

    nodes = onnx.load_from_string(graph).graph.node
    return {op: sum(1 for n in nodes if n.op_type == op) for op in ("QuantizeLinear", "DequantizeLinear")}
