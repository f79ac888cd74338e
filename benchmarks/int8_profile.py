"""Where a reference net's int8 time goes: ONNX Runtime's profiler, per op type, fp32 graph against int8 QDQ graph.

Each graph runs 60 times on one random 136x240 frame (2 threads); prints the milliseconds per run spent in each op
type and the op types of ONNX Runtime's optimized graph, which show whether every conv ran as QLinearConv
(reports/int8.md, "Shared biases"). Not a latency measurement: the search's protocol times rows.

Usage: python benchmarks/int8_profile.py abpn espcn
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from search_spaces import build, get_space
from search_spaces.onnx_export import INPUT_NAME, graph_bytes
from search_spaces.onnx_quant import quantize_graph

RUNS = 60


def profile(graph: bytes, frame: np.ndarray, folder: Path, tag: str) -> tuple[dict[str, float], collections.Counter]:
    """Milliseconds per run in each op type, and the optimized graph's op types."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.enable_profiling, options.profile_file_prefix = True, str(folder / tag)
    options.optimized_model_filepath = str(folder / f"{tag}.onnx")
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    for _ in range(RUNS):
        session.run(None, {INPUT_NAME: frame})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    ms = {op: us / RUNS / 1000 for op, us in per_op.most_common()}
    return ms, collections.Counter(n.op_type for n in onnx.load(str(folder / f"{tag}.onnx")).graph.node)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nets", nargs="+", help="reference nets of sr2x")
    args = ap.parse_args()
    space = get_space("sr2x")
    refs = space.references() | space.modern_references()
    rng = np.random.default_rng(0)
    frames = [rng.random((1, 3, 136, 240), dtype=np.float32) for _ in range(4)]
    with tempfile.TemporaryDirectory(prefix="nas-int8-profile-") as tmp:
        for name in args.nets:
            fp32 = graph_bytes(build(refs[name]).eval(), (1, 3, 136, 240))
            for tag, graph in (("fp32", fp32), ("int8", quantize_graph(fp32, frames, "ort"))):
                ms, ops = profile(graph, frames[0], Path(tmp), f"{name}_{tag}")
                print(f"{name} {tag}: {sum(ms.values()):.2f} ms/run "
                      + " ".join(f"{op}={t:.2f}" for op, t in ms.items()), flush=True)
                print(f"    optimized graph: {dict(ops)}", flush=True)


if __name__ == "__main__":
    main()
