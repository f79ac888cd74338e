"""Re-time a finished bench's winners beside the references near each budget, in one process, interleaved.

A bench measures each net once, at the moment its search meets it, and this CPU's speed drifts between
minutes (the drift canary's ratio to its baseline moved 0.75-1.5x during reports/bench.md run 7), so a
winner and a reference measured half an hour apart are not compared on one clock. This script opens an
ONNX Runtime session for every search winner (each budget, each seed) and every reference within
0.5-1.25x a budget, then runs them round-robin (order rotated each round), so drift hits all alike; it
prints per net the median of its samples and the ratio to the best fitting reference's median. Markdown.

    flock /tmp/nas-cpu-bench.lock python benchmarks/bench_retime.py bench/sr4x/out --rounds 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from latency_db import get_backend, workload_for
from latency_db.fingerprint import cpu_fingerprint
from search_spaces import ArchSpec, get_space


def nets_of(out: Path) -> tuple[dict, list[tuple[str, ArchSpec, float | None]]]:
    """The bench's result and (label, spec, bench latency) for each winner and each reference near a budget."""
    result = json.loads((out / "bench.json").read_text())
    searcher = result["config"]["samplers"][0]
    space = get_space(result["config"]["task"])
    refs = space.references() | space.modern_references()
    picked: list[tuple[str, ArchSpec, float | None]] = []
    for run in result["runs"]:
        if run["sampler"] == searcher and run["best"] is not None:
            spec = ArchSpec.from_json((Path(run["run_dir"]) / "archs" / run["best"]["arch_id"] / "arch.json")
                                      .read_text())
            picked.append((f"winner {run['budget_ms']:g} ms seed {run['seed']}", spec, run["best"]["latency_ms"]))
    budgets = [t["budget_ms"] for t in result["budgets"]]
    for name, entry in result["references"].items():
        lat = entry["latency_ms"]
        if name in refs and lat is not None and any(0.5 * b <= lat <= 1.25 * b for b in budgets):
            picked.append((name, refs[name], lat))
    return result, picked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a bench's --out folder (holds bench.json)")
    ap.add_argument("--rounds", type=int, default=30, help="round-robin rounds (default 30)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of a net per round (default 5)")
    args = ap.parse_args()

    result, picked = nets_of(args.out)
    height, width = result["input_size"]
    backend = get_backend("onnxruntime", protocol="fast")
    sessions = [backend._open(spec, workload_for(spec, height, width, "fp32")) for _, spec, _ in picked]
    samples: list[list[float]] = [[] for _ in picked]
    try:
        for sess in sessions:  # warm-up
            for _ in range(3):
                sess.sess.run(None, sess.feed)
        for r in range(args.rounds):
            order = list(range(len(sessions)))
            order = order[r % len(order):] + order[:r % len(order)]
            for i in order:
                for _ in range(args.runs):
                    t = time.perf_counter()
                    sessions[i].sess.run(None, sessions[i].feed)
                    samples[i].append((time.perf_counter() - t) * 1e3)
    finally:
        for sess in sessions:
            sess.close()

    medians = [statistics.median(s) for s in samples]
    key = cpu_fingerprint(backend.threads)["key"]
    print(f"{key['cpu_model']} (family {key['cpu_family']} model {key['cpu_model_number']} stepping "
          f"{key['stepping']}; {' '.join(key['isa'])}); onnxruntime {backend.version()}, {height}x{width} fp32, "
          f"{args.rounds} rounds x {args.runs} runs per net, interleaved\n")
    for table in result["budgets"]:
        ref = table["best_reference"]
        base = next((m for (label, _, _), m in zip(picked, medians) if ref and label == ref["name"]), None)
        print(f"Budget {table['budget_ms']:g} ms, best fitting reference {ref['name'] if ref else 'none'}\n")
        print("| net | bench latency ms | re-timed median ms | p10-p90 ms | ratio to the best fitting reference |")
        print("|---|---|---|---|---|")
        for (label, _, lat), med, s in zip(picked, medians, samples):
            q = statistics.quantiles(s, n=10)
            ratio = f"{med / base:.3f}" if base else "-"
            bench = f"{lat:.3f}" if lat is not None else "-"
            print(f"| {label} | {bench} | {med:.3f} | {q[0]:.3f}-{q[-1]:.3f} | {ratio} |")
        print()


if __name__ == "__main__":
    main()
