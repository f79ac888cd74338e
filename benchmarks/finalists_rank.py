"""How many finalists recover the best net after the long training? From reports/bench.md's short-vs-long tables.

Usage: python benchmarks/finalists_rank.py [reports/bench.md]

For every "Short (500 steps) vs long (2000 steps) training" table of reports/bench.md (one per bench run: each
budget's winner and every reference net, short and long gain at one seed) it prints the short-training rank of the
net that is best after the long training, and for K = 1..5 finalists (the K best by short gain, trained long) the
long gain that choice ends with and how far it is below the true long-training best. Used to pick
``DEFAULT_FINALISTS`` (reports/finalists.md).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def tables(text: str) -> dict[str, list[tuple[str, float, float]]]:
    """Run title -> [(net, short gain, long gain)] of its short-vs-long table."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    run, current = "", None
    for line in text.splitlines():
        if m := re.match(r"^## (Run \d+)", line):
            run = m.group(1)
        if line.startswith("### Short"):
            current = out.setdefault(run, [])
            continue
        if current is not None and line.startswith("###"):
            current = None
        if current is not None and line.startswith("| ") and not line.startswith("| net") and "---" not in line:
            cells = [c.strip() for c in line.split("|")]
            try:
                current.append((cells[1], float(cells[3]), float(cells[4])))
            except (IndexError, ValueError):
                continue
    return {k: v for k, v in out.items() if v}


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/bench.md")
    print("| run | nets | best after long training | its short rank | K=1 | K=2 | K=3 | K=4 | K=5 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run, rows in tables(path.read_text()).items():
        ranked = sorted(rows, key=lambda r: -r[1])
        best = max(rows, key=lambda r: r[2])
        rank = [r[0] for r in ranked].index(best[0]) + 1
        cells = []
        for k in range(1, 6):
            chosen = max(ranked[:k], key=lambda r: r[2])
            cells.append(f"{chosen[2]:+.3f} ({chosen[2] - best[2]:+.3f})")
        print(f"| {run} | {len(rows)} | {best[0]} {best[2]:+.3f} | {rank} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
