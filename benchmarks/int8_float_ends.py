"""The int8 graph with its ends left float (quantization version 3) against every node quantized (version 2).

Per net: a short training at TrainConfig's defaults, then the post-training int8 gain of both graphs on the same
calibration patches, the float gain, and the search's int8 result (``quantize_trained``: PTQ, then QAT when PTQ loses
more than the threshold) with version 3; then both graphs' latency at 136x240 on ONNX Runtime's CPU provider (2
threads), timed in alternating 0.3 s windows in this one process (median of window medians; ratio v3 / v2).

Usage: python benchmarks/int8_float_ends.py [--steps 500] [--rounds 15] [NET ...]
Prints one JSON object per net and a summary (reports/int8.md, "Session 11").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import numpy as np

from latency_db.fingerprint import cpu_isa
from nas.training.data import load_data, val_pairs
from nas.training.quantize import calibration_inputs, ort_validate, quantize_trained
from nas.training.train import TrainConfig, short_train
from search_spaces import build, get_space
from search_spaces.onnx_export import graph_bytes
from search_spaces.onnx_quant import quantize_graph

NETS = ("espcn", "fsrcnn", "fsrcnn_small", "quicksrnet_s", "abpn", "ecbsr_m4c16", "ecbsr_m4c8", "sesr_m5")
SHAPE = (1, 3, 136, 240)


def window_medians(graphs: dict[str, bytes], rounds: int, window_s: float = 0.3) -> dict[str, float]:
    """Median over ``rounds`` of each graph's median run time (ms) in a window, the graphs' windows alternating."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 2
    x = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    sessions = {k: ort.InferenceSession(g, opts, providers=["CPUExecutionProvider"]) for k, g in graphs.items()}
    samples: dict[str, list[float]] = {k: [] for k in graphs}
    for s in sessions.values():  # warm-up
        for _ in range(5):
            s.run(None, {"input": x})
    for _ in range(rounds):
        for k, s in sessions.items():
            runs, end = [], time.perf_counter() + window_s
            while time.perf_counter() < end:
                t = time.perf_counter()
                s.run(None, {"input": x})
                runs.append(time.perf_counter() - t)
            samples[k].append(1e3 * statistics.median(runs))
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nets", nargs="*", default=list(NETS))
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    import onnxruntime

    print(json.dumps({"cpu_isa": sorted(cpu_isa()), "onnxruntime": onnxruntime.__version__}))
    space = get_space("sr2x")
    refs = space.references() | space.modern_references()
    config = replace(TrainConfig(), steps=args.steps)
    data = load_data("sr", 2, config.patch_size)
    pairs = val_pairs(data, config.noise_sigma)
    calibration = calibration_inputs(data, config)
    rows = []
    for name in args.nets:
        trained = short_train(refs[name], data, config)
        net = build(refs[name])
        net.load_state_dict(trained.state_dict)
        graph = graph_bytes(net, calibration[0].shape, dynamic=True, check=False)
        v2 = quantize_graph(graph, calibration, "ort", keep_float_ends=False)
        v3 = quantize_graph(graph, calibration, "ort")
        gain = {k: (lambda r: r[0] - r[1])(ort_validate(g, pairs, "sr", 2)) for k, g in (("v2", v2), ("v3", v3))}
        search = quantize_trained(refs[name], trained.state_dict, trained.psnr_gain_db, data, config)
        ms = window_medians({"v2": v2, "v3": v3}, args.rounds)
        row = {"net": name, "float": trained.psnr_gain_db, "ptq_v2": gain["v2"], "ptq_v3": gain["v3"],
               "search_v3": search.gain_db, "search_method": search.method, "ms_v2": ms["v2"], "ms_v3": ms["v3"],
               "ms_ratio": ms["v3"] / ms["v2"]}
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    summary = {f"mean loss against float, {k} (dB)": round(statistics.mean(r["float"] - r[k] for r in rows), 4)
               for k in ("ptq_v2", "ptq_v3", "search_v3")}
    summary["median latency ratio v3 / v2"] = round(statistics.median(r["ms_ratio"] for r in rows), 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
