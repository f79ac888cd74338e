"""7-bit against 8-bit int8 weights on this CPU: the post-training int8 gain of trained nets quantized as the search
does (``ort``: 7-bit weights, search_spaces/onnx_quant.py) and with 8-bit weights (the same ``quantize_static`` call
without ``reduce_range``), in an optimized session and, for 8 bits, in the exact QDQ arithmetic (graph optimizations
off), to see whether 8-bit weights would pay where the u8s8 kernels do not saturate (VNNI).

Usage: python benchmarks/int8_weight_bits.py [--steps 500] [--arch ARCH_JSON ...] [NET ...]
Each net is short-trained at TrainConfig's defaults (fp32), then quantized both ways on the same calibration patches.
Prints one JSON object per net and the CPU's VNNI flags (reports/int8.md, "Session 10").
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from latency_db.fingerprint import cpu_isa
from nas.training.data import load_data, val_pairs
from nas.training.metrics import psnr
from nas.training.quantize import calibration_inputs
from nas.training.train import TrainConfig, baseline, short_train
from search_spaces import build, get_space, load_spec
from search_spaces.onnx_export import graph_bytes
from search_spaces.onnx_quant import calibration_reader, quantize_graph, unshared_initializers

NETS = ("espcn", "fsrcnn", "quicksrnet_s", "abpn", "ecbsr_m4c16", "sesr_m5")


def eight_bit_graph(graph: bytes, calibration: list) -> bytes:
    """``quantize_graph(graph, calibration, "ort")`` with 8-bit weights (no ``reduce_range``)."""
    import os
    import tempfile

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        Path(src).write_bytes(unshared_initializers(graph))
        quantize_static(src, dst, calibration_reader(calibration, "input"), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=False,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return Path(dst).read_bytes()


def gain(graph: bytes, pairs: list, scale: int, optimized: bool) -> float:
    """Mean PSNR gain over the classical base of ``graph`` run by ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    gains = []
    for inp, tgt in pairs:
        out = torch.from_numpy(sess.run(None, {name: inp.numpy()})[0]).clamp(0, 1)
        gains.append(float(psnr(out, tgt, scale)[0]) - float(psnr(baseline(inp, "sr", scale), tgt, scale)[0]))
    return statistics.mean(gains)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nets", nargs="*", default=list(NETS))
    ap.add_argument("--arch", action="append", default=[], help="an arch.json of a searched net (repeatable)")
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    args = ap.parse_args()
    import onnxruntime

    print(json.dumps({"vnni": sorted(f for f in cpu_isa() if "vnni" in f), "onnxruntime": onnxruntime.__version__}))
    space = get_space("sr2x")
    refs = space.references() | space.modern_references()
    specs = {n: refs[n] for n in args.nets} | {Path(a).parent.name[:8]: load_spec(a) for a in args.arch}
    config = replace(TrainConfig(), steps=args.steps)
    data = load_data("sr", 2, config.patch_size)
    pairs = val_pairs(data, config.noise_sigma)
    calibration = calibration_inputs(data, config)
    rows = []
    for name, spec in specs.items():
        trained = short_train(spec, data, config)
        net = build(spec)
        net.load_state_dict(trained.state_dict)
        graph = graph_bytes(net, calibration[0].shape, dynamic=True, check=False)
        g7, g8 = quantize_graph(graph, calibration, "ort"), eight_bit_graph(graph, calibration)
        row = {"net": name, "float": trained.psnr_gain_db, "int7": gain(g7, pairs, 2, True),
               "int8": gain(g8, pairs, 2, True), "int8_exact": gain(g8, pairs, 2, False)}
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    loss = {k: statistics.mean(r["float"] - r[k] for r in rows) for k in ("int7", "int8", "int8_exact")}
    print(json.dumps({"mean loss against float (dB)": {k: round(v, 4) for k, v in loss.items()}}))


if __name__ == "__main__":
    main()
