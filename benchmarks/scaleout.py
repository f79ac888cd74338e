"""Scale-out benchmark: trials per minute with 1 to 8 `nas search` workers on one PostgreSQL study.

For each worker count N, a fresh database holds the study and the latency database (so every
candidate is measured and trained, nothing comes from an earlier run); N processes with their own
run dir each contribute --trials K. Wall time runs from the first start to the last exit, process
start-up included. While they run, the server's connections to that database are counted every
half second (peak reported). Afterwards the study is checked: N x K finished trials, none left
RUNNING or WAITING, one latency row per architecture. Prints a Markdown table (also against ideal
linear scaling from N=1) and the CPU (family, model, flags) it ran on.

    python benchmarks/scaleout.py --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SEARCH = ["--task", "sr2x", "--input-size", "32x48", "--budget-ms", "2", "--train-steps", "20", "--seed", "0",
          "--backend", "onnxruntime", "--no-warm-start", "--no-report", "--no-export", "--json"]


def fresh_database(url: str) -> str:
    name = f"nas_bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def run_workers(url: str, workers: int, trials: int, root: Path) -> dict[str, Any]:
    """N workers on one study in a fresh database; wall time, trials and distinct architectures."""
    db = fresh_database(url)
    env = {**os.environ, "NAS_CACHE_DIR": str(root / "cache")}
    shared = ["--storage", db, "--latency-db", db, "--study", "bench", "--trials", str(trials)]
    peak = {"connections": 0}
    stop = threading.Event()

    def count_connections() -> None:
        engine = sa.create_engine(url)
        name = db.rsplit("/", 1)[1]
        while not stop.wait(0.5):
            with engine.connect() as conn:
                n = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"),
                                 {"d": name}).scalar_one()
            peak["connections"] = max(peak["connections"], int(n))
        engine.dispose()

    sampler = threading.Thread(target=count_connections, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "nas.cli", "search", *SEARCH, *shared,
                               "--run-dir", str(root / f"n{workers}-w{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(workers)]
    outs = [p.communicate(timeout=3600) for p in procs]  # a deadlock would end here
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise SystemExit(f"a worker failed (exit {p.returncode}): {err.strip()[-500:]}")
    summaries = [json.loads(out) for out, _ in outs]
    engine = sa.create_engine(db)
    with engine.connect() as conn:
        archs = conn.execute(sa.text("SELECT count(DISTINCT arch_id) FROM latency")).scalar_one()
        rows = conn.execute(sa.text("SELECT count(*) FROM latency")).scalar_one()
        states = dict(conn.execute(sa.text("SELECT state, count(*) FROM trials GROUP BY state")).all())
    engine.dispose()
    done = sum(s["this_run"]["trials"] for s in summaries)
    finished = sum(n for state, n in states.items() if state in ("COMPLETE", "PRUNED", "FAIL"))
    if done != workers * trials or finished != sum(states.values()) or rows != archs:
        raise SystemExit(f"lost or duplicated work with {workers} workers: {done} trials counted for "
                         f"{workers * trials}, trial states {states}, {rows} latency rows for {archs} archs")
    return {"workers": workers, "trials": done, "archs": int(archs), "wall_s": wall,
            "study_trials": sum(states.values()), "peak_connections": peak["connections"],
            "lock_wait_s": sum(s["lock_wait_s"] for s in summaries),
            "train_s": sum(s["train_s"] for s in summaries), "measure_s": sum(s["measure_s"] for s in summaries)}


def cpu_line() -> str:
    """CPU vendor, family, model and the instruction-set flags that change ONNX Runtime's kernels."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return platform.processor() or "unknown"
    flags = [f for f in fields.get("flags", "").split() if f.startswith(("avx", "fma", "amx"))]
    return (f"{fields.get('model name', '?')}, family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
            f", flags {' '.join(sorted(flags))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of a PostgreSQL server database "
                        "(a fresh database is created per worker count)")
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts (default 1,2,4,8)")
    parser.add_argument("--trials", type=int, default=4, help="trials per worker (default 4)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.workers.split(",")):
            results.append(run_workers(args.url, n, args.trials, Path(tmp)))
            print(f"# {n} worker(s) done: {results[-1]}", file=sys.stderr)
    load_after = os.getloadavg()

    base = results[0]["trials"] / results[0]["wall_s"] * 60 / results[0]["workers"]
    print(f"CPU: {cpu_line()}\n")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
          f"load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}\n")
    print("| workers | trials | study trials | distinct archs | wall s | trials/min | ideal trials/min | efficiency "
          "| peak connections | device-lock wait s (sum) | measure s | train s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        rate = r["trials"] / r["wall_s"] * 60
        ideal = base * r["workers"]
        print(f"| {r['workers']} | {r['trials']} | {r['study_trials']} | {r['archs']} | {r['wall_s']:.1f} | {rate:.1f} "
              f"| {ideal:.1f} | {rate / ideal:.0%} | {r['peak_connections']} | {r['lock_wait_s']:.1f} "
              f"| {r['measure_s']:.1f} | {r['train_s']:.1f} |")


if __name__ == "__main__":
    main()
