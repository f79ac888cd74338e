"""Print each search's winner (short, finalists' and long gain), the judged pairs and the best fitting references
of `nas bench` runs, for the tables of reports/finalists.md and reports/int8.md.

    python benchmarks/bench_table.py OUT/fin3_8ms_s7/bench.json OUT/int8_4ms_s8/bench.json ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def describe(path: Path) -> None:
    """One bench.json: its cost, every search's winner, the long-training verdicts, the three best fitting nets."""
    bench = json.loads(path.read_text())
    print("==", path, "wall", bench["wall_s"], bench["phase_s"], "new rows", bench["new_latency_rows"],
          "trainings", bench["new_trainings"])
    for run in bench["runs"]:
        best = run["best"]
        if best is None:
            print("  ", run["sampler"], run["seed"], "no winner")
            continue
        judged = next((j for j in bench["long"]["judged"]
                       if j["budget_ms"] == run["budget_ms"] and j["seed"] == run["seed"]), None)
        long_gain = judged["winner_long_gain_db"] if judged and run["sampler"] == "evolution" else None
        print("  ", run["sampler"], run["seed"], "trial", best["trial"], best.get("summary"), best.get("precision"),
              f"{best['latency_ms']:.2f} ms", f"short {best['psnr_gain_db']:+.3f}",
              "final", best.get("final_psnr_gain_db"), "long", long_gain)
    for judged in bench["long"]["judged"]:
        print("  judged", judged)
    budget = bench["budgets"][0]["budget_ms"]
    fitting = sorted((e["gain"]["mean"], name, e["latency_ms"]) for name, e in bench["references"].items()
                     if e["latency_ms"] <= budget)
    print("  best fitting references", [(name, f"{ms:.2f} ms", f"{gain:+.3f}") for gain, name, ms in fitting[-3:]])
    for net in bench["long"]["nets"]:
        print("  long", net["labels"], f"{net['short']['psnr_gain_db']:+.3f} -> {net['long']['psnr_gain_db']:+.3f}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        describe(Path(arg))
