"""Repeat agreement of a CPU timing protocol: the same nets timed afresh in separate processes, minutes apart.

``run`` times random sr2x nets (fixed seeds; 50 at 135x240, 20 at 540x960) and every sr2x reference, with the old
protocol (``fast-v2`` by default: visits, the minimum of window medians, rows settled by interleaved visits;
``fast-v1``: one block, its median) and the new one (``fast``, cpu-fast-v4: v2 with slow spells waited out),
each in a fresh empty database, and appends one JSON line
per (protocol, size) to OUT: each net's latency, and the wall seconds the whole protocol took per net
(export, session build, timing and any wait included). ``report`` pairs the first two runs of each
protocol and size: the share of nets whose two latencies agree within +-10 %, and the time per net.

    python benchmarks/latency_repeat.py run --out /tmp/repeat.jsonl      # run 1
    sleep 600; python benchmarks/latency_repeat.py run --out /tmp/repeat.jsonl   # run 2, 10+ minutes later
    python benchmarks/latency_repeat.py report --out /tmp/repeat.jsonl

``--load`` runs a busy process on one core for the whole run (the "noisy machine" check) and ``--sizes``
picks the sizes (e.g. ``135x240``). The report also gives the agreement of the first visits alone (what a search's
gate sees for a candidate far from the budget, whose row is not settled further).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

from latency_db import get_backend, open_store, workload_for
from latency_db.contention import others_cpus, snapshot
from latency_db.fingerprint import cpu_fingerprint, physical_cores
from latency_db.measure import measure_or_get, settle_all, visits_of
from latency_db.stats import percentile
from search_spaces import get_space

SIZES = {(135, 240): 50, (540, 960): 20}  # random nets per size (at 540x960 a random net takes up to ~1 s a run)
SEED0 = 31_000


def nets(h: int, w: int) -> list[tuple[str, object]]:
    space = get_space("sr2x")
    refs = list(space.references().items())
    randoms = SIZES[(h, w)]
    return refs + [(f"random-{i}", space.random_spec(random.Random(SEED0 + i), (h, w))) for i in range(randoms)]


def time_all(protocol: str, h: int, w: int, load: bool) -> dict:
    backend = get_backend("onnxruntime", protocol=protocol)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/lat.db")
        named = nets(h, w)
        items = [(spec, workload_for(spec, h, w, "fp32")) for _, spec in named]
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        before, t0 = snapshot(), time.perf_counter()
        if backend.protocol.windows is None:
            results = [measure_or_get(spec, wl, backend, store) for spec, wl in items]
        else:
            results = settle_all(items, backend, store)
        wall = time.perf_counter() - t0
        busy = others_cpus(before, snapshot())
        rows = store.rows_where(status="ok")
        windows = {row["arch_id"]: [list(v.medians_ms) for v in visits_of(row)] for row in rows}
        probes = {row["arch_id"]: [[v.probe_ms, v.probe_best_ms, v.spell_waited_s, v.at] for v in visits_of(row)]
                  for row in rows}
        store.engine.dispose()
    return {"protocol": backend.protocol.name, "h": h, "w": w, "at": started, "load": load,
            "wall_s": round(wall, 2), "per_net_s": round(wall / len(items), 3), "others_cpus": busy,
            "latency_ms": {name: r.median_ms for (name, _), r in zip(named, results)},
            "visits": {name: r.visits for (name, _), r in zip(named, results)},
            "first_ms": {name: r.first_ms for (name, _), r in zip(named, results)},
            "windows": {name: windows.get(spec.arch_id, []) for name, spec in named},  # per visit, window medians
            # v3, per visit: the spell probe's reading, its best in the process then, the seconds a spell cost, when
            "probes": {name: probes.get(spec.arch_id, []) for name, spec in named},
            "contended": sum(1 for r in results if r.contended)}


def run(args: argparse.Namespace) -> None:
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")] if args.sizes else list(SIZES)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    try:
        with Path(args.out).open("a") as fh:
            for h, w in sizes:  # the protocols' timings of one size follow each other; a second run comes 10+ min later
                for protocol in args.protocols.split(","):
                    fh.write(json.dumps(time_all(protocol, h, w, args.load)) + "\n")
                    fh.flush()
    finally:
        if busy is not None:
            busy.kill()


def report(args: argparse.Namespace) -> None:
    fp = cpu_fingerprint(physical_cores())
    print(f"CPU: {fp['device']}; {json.dumps(fp['key'], sort_keys=True)[:300]}")
    runs: dict[tuple[bool, str, int, int], list[dict]] = {}
    for line in Path(args.out).read_text().splitlines():
        d = json.loads(line)
        runs.setdefault((d.get("load", False), d["protocol"], d["h"], d["w"]), []).append(d)
    print("| load | protocol | size | runs at | nets | within +-10 % | first visits within +-10 % | median abs diff |"
          " visits per net | s per net (run 1 / run 2) | other CPU use |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (load, protocol, h, w), a, b in pairs(runs):
        names = [n for n in a["latency_ms"] if a["latency_ms"][n] and b["latency_ms"].get(n)]
        ratios = [b["latency_ms"][n] / a["latency_ms"][n] for n in names]
        firsts = [b["first_ms"][n] / a["first_ms"][n] for n in names if a["first_ms"].get(n) and b["first_ms"].get(n)]
        visits = statistics.mean(v for d in (a, b) for v in d["visits"].values())
        print(f"| {'1 busy core' if load else 'quiet'} | {protocol} | {h}x{w} | {a['at']} / {b['at']} | {len(names)}"
              f" | {share(ratios)} | {share(firsts) if firsts else '-'}"
              f" | {100 * statistics.median(abs(r - 1) for r in ratios):.1f} % | {visits:.2f}"
              f" | {a['per_net_s']} / {b['per_net_s']} | {a['others_cpus']:.2f} / {b['others_cpus']:.2f} |")
    print()
    print("How far a first visit lies above its row's settled latency (first / settled), over every net of every run:")
    print()
    print("| load | size | nets | median | 90th pct | 99th pct | max | min |")
    print("|---|---|---|---|---|---|---|---|")
    for (load, protocol, h, w), every in sorted(runs.items()):
        ups = sorted(d["first_ms"][n] / d["latency_ms"][n] for d in every for n in d["latency_ms"]
                     if d["latency_ms"][n] and d["first_ms"].get(n))
        if protocol.endswith("v1") or not ups:
            continue
        q = statistics.quantiles(ups, n=100)
        print(f"| {'1 busy core' if load else 'quiet'} | {h}x{w} | {len(ups)} | {statistics.median(ups):.3f} |"
              f" {q[89]:.3f} | {q[98]:.3f} | {ups[-1]:.3f} | {ups[0]:.3f} |")
    replay(runs)


def pairs(runs: dict[tuple[bool, str, int, int], list[dict]]) -> list[tuple[tuple[bool, str, int, int], dict, dict]]:
    """Every pair of runs of the same load, protocol and size, in the order they ran."""
    return [(key, a, b) for key, every in sorted(runs.items()) for a, b in combinations(every, 2)]


ESTIMATORS = {"minimum (v2)": 0.0, "10th pct": 10.0, "20th pct": 20.0, "30th pct": 30.0, "median": 50.0}


def replay(runs: dict[tuple[bool, str, int, int], list[dict]]) -> None:
    """Repeat agreement of other estimators over the same stored window medians (every clean window of
    every visit of a row), pairing the first two runs that stored windows."""
    print()
    print("Estimators replayed over the stored window medians (pairs of runs of the same protocol and size):")
    print()
    print("| load | protocol | size | runs at | nets | " + " | ".join(ESTIMATORS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(ESTIMATORS))
    stored = {k: [d for d in every if d.get("windows")] for k, every in runs.items() if not k[1].endswith("v1")}
    for (load, protocol, h, w), a, b in pairs(stored):
        names = [n for n in a["windows"] if a["windows"][n] and b["windows"].get(n)]
        cells = []
        for q in ESTIMATORS.values():
            def est(d: dict, name: str, q: float = q) -> float:
                return percentile(sorted(m for visit in d["windows"][name] for m in visit), q)
            cells.append(share([est(b, n) / est(a, n) for n in names]))
        print(f"| {'1 busy core' if load else 'quiet'} | {protocol} | {h}x{w} | {a['at']} / {b['at']} | {len(names)}"
              f" | " + " | ".join(cells) + " |")


def share(ratios: list[float]) -> str:
    """How many of the ratios lie within +-10 % of 1, and their share."""
    within = sum(abs(r - 1) <= 0.10 for r in ratios)
    return f"{within}/{len(ratios)} ({100 * within / len(ratios):.0f} %)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["run", "report"])
    p.add_argument("--out", required=True)
    p.add_argument("--load", action="store_true", help="keep one core busy with another process during the run")
    p.add_argument("--protocols", default="fast-v2,fast", help="protocols timed per size (default fast-v2,fast)")
    p.add_argument("--sizes", default="", help="HxW[,HxW] (default: 135x240 and 540x960)")
    args = p.parse_args()
    run(args) if args.what == "run" else report(args)


if __name__ == "__main__":
    main()
