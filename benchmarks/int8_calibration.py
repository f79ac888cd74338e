"""How the activation ranges are calibrated: min/max over the search's 32 training patches (quantization version 3)
against more patches and ONNX Runtime's percentile and entropy calibration, on trained nets.

Per net: a short training at TrainConfig's defaults, then the post-training int8 gain (ONNX Runtime, the validation
crops) of the version-3 graph with each calibration; the weights, the float ends and everything else as the search
quantizes (search_spaces/onnx_quant.py). Latency does not depend on the ranges (the same kernels), so it is not timed.

Usage: python benchmarks/int8_calibration.py [--steps 500] [NET ...]
Prints one JSON object per net and the mean loss against the float net per calibration (reports/int8.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from nas.training.data import load_data, val_pairs
from nas.training.quantize import CALIBRATION_PATCHES, calibration_inputs, ort_validate
from nas.training.train import TrainConfig, short_train
from search_spaces import build, get_space
from search_spaces.onnx_export import graph_bytes
from search_spaces.onnx_quant import (
    calibration_reader,
    float_ends,
    float_inputs,
    quantize_graph,
    unshared_initializers,
)

NETS = ("espcn", "fsrcnn", "fsrcnn_small", "quicksrnet_s", "abpn", "ecbsr_m4c16", "ecbsr_m4c8", "sesr_m5")
# name: (ONNX Runtime calibration method, its extra options, patches)
VARIANTS = {"minmax-128": ("MinMax", {}, 128), "percentile-99.999": ("Percentile", {"CalibPercentile": 99.999}, 32),
            "percentile-99.99": ("Percentile", {"CalibPercentile": 99.99}, 32), "entropy": ("Entropy", {}, 32)}


def calibrated_graph(graph: bytes, calibration: list[np.ndarray], method: str, options: dict) -> bytes:
    """``quantize_graph(graph, calibration, "ort")`` with another calibration method."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    graph = unshared_initializers(graph)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        Path(src).write_bytes(graph)
        logging.disable(logging.WARNING)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print
                quantize_static(src, dst, calibration_reader(calibration, "input"), quant_format=QuantFormat.QDQ,
                                per_channel=True, reduce_range=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=getattr(CalibrationMethod, method),
                                nodes_to_exclude=float_ends(graph),
                                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, **options})
        finally:
            logging.disable(logging.NOTSET)
        return float_inputs(Path(dst).read_bytes(), float_ends(graph))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nets", nargs="*", default=list(NETS))
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    args = ap.parse_args()
    space = get_space("sr2x")
    refs = space.references() | space.modern_references()
    config = replace(TrainConfig(), steps=args.steps)
    data = load_data("sr", 2, config.patch_size)
    pairs = val_pairs(data, config.noise_sigma)
    counts = {CALIBRATION_PATCHES, *(n for _, _, n in VARIANTS.values())}
    patches = {n: calibration_inputs(data, config, n) for n in counts}
    rows = []
    for name in args.nets:
        trained = short_train(refs[name], data, config)
        net = build(refs[name])
        net.load_state_dict(trained.state_dict)
        graph = graph_bytes(net, patches[CALIBRATION_PATCHES][0].shape, dynamic=True, check=False)
        graphs = {"minmax-32": quantize_graph(graph, patches[CALIBRATION_PATCHES], "ort")}
        for variant, (method, options, n) in VARIANTS.items():
            graphs[variant] = calibrated_graph(graph, patches[n], method, options)
        row = {"net": name, "float": trained.psnr_gain_db}
        row |= {k: (lambda r: r[0] - r[1])(ort_validate(g, pairs, "sr", 2)) for k, g in graphs.items()}
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    print(json.dumps({"mean loss against float (dB)": {k: round(statistics.mean(r["float"] - r[k] for r in rows), 4)
                                                       for k in rows[0] if k not in ("net", "float")}}))


if __name__ == "__main__":
    main()
