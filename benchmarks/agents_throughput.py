"""Latency agents: jobs per minute with 1, 2 and 4 agents on one name, and a search's time waiting for them.

For each agent count N, a fresh database (a new database on the PostgreSQL server of --url, or a new SQLite
file without it) gets N `nas agent --name bench --threads 1` processes; then J jobs of distinct networks
(drawn at random from the sr2x space at 32x48, the same J for every N) are queued at once, and the wall time
from the first submission to the last job done gives the throughput. The queue is then checked: every job
done once (one claim each), one latency row per job. Second part, for each N: a tiny `nas search --target
bench=MS --json` against the same agents on a fresh database, whose summary's `this_run.target_wait_s` is
the time it spent waiting for remote measurements, beside its wall time. Prints Markdown tables and the CPU.

On one machine every agent times under the same device lock (one timing at a time per device), so extra
agents overlap only the export, the engine build and the queue's round trips; across machines, one agent per
device, they add up. Run it on a quiet machine:

    python benchmarks/agents_throughput.py --jobs 24 --trials 8
    python benchmarks/agents_throughput.py --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

SEARCH = ["search", "--task", "sr2x", "--input-size", "32x48", "--train-steps", "20", "--seed", "0",
          "--backend", "onnxruntime", "--no-report", "--no-export", "--json"]
NAME = "bench"


def fresh_database(url: str | None, root: Path) -> str:
    """A new empty database: on the server of ``url``, else a new SQLite file under ``root``."""
    if url is None:
        return f"sqlite:///{root / f'latency-{uuid.uuid4().hex[:8]}.db'}"
    import sqlalchemy as sa

    name = f"nas_agents_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def networks(n: int, seed: int = 0) -> list[Any]:
    """``n`` distinct networks of the sr2x space at 32x48, drawn at random (the same for every run)."""
    import optuna

    from search_spaces import get_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, study = get_space("sr2x"), optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    found: dict[str, Any] = {}
    while len(found) < n:
        spec = space.sample(study.ask(), (32, 48))
        found.setdefault(spec.arch_id, spec)
    return list(found.values())


def start_agents(db: str, n: int, env: dict[str, str], root: Path) -> list[subprocess.Popen]:
    from latency_db import LatencyStore
    from latency_db.jobs import JobQueue

    procs = [subprocess.Popen([sys.executable, "-m", "nas.cli", "agent", "--name", NAME, "--latency-db", db,
                               "--backend", "onnxruntime", "--threads", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(root / f"agent-{i}.log", "w"))  # noqa: SIM115
             for i in range(n)]
    queue = JobQueue(LatencyStore(db))
    while len(queue.live_agents(NAME)) < n:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"an agent exited at start: see {root}/agent-*.log")
        time.sleep(0.1)
    return procs


def stop_agents(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=120)


def queue_run(url: str | None, n_agents: int, specs: list[Any], root: Path) -> dict[str, Any]:
    """N agents, J jobs queued at once: wall time to the last done, and the queue's checks."""
    from latency_db import LatencyStore, Workload
    from latency_db.jobs import DONE, JobQueue

    db = fresh_database(url, root)
    env = {**os.environ, "NAS_CACHE_DIR": str(root / f"cache-q{n_agents}")}
    procs = start_agents(db, n_agents, env, root)
    store = LatencyStore(db)
    queue = JobQueue(store)
    try:
        protocol = queue.live_agents(NAME)[0].protocol
        workload = Workload(height=32, width=48, scale=2).to_dict()
        t0 = time.perf_counter()
        ids = [queue.submit(NAME, protocol, s.arch_id, s.canonical_json(), workload) for s in specs]
        while not all(j.finished for j in queue.states(ids).values()):
            time.sleep(0.1)
        wall = time.perf_counter() - t0
    finally:
        stop_agents(procs)
    jobs = queue.states(ids)
    per_agent: dict[str, int] = {}
    for j in jobs.values():
        per_agent[j.agent_id or "-"] = per_agent.get(j.agent_id or "-", 0) + 1
    return {"agents": n_agents, "jobs": len(ids), "wall_s": round(wall, 2),
            "jobs_per_min": round(60 * len(ids) / wall, 1),
            "done_once": all(j.state == DONE and j.attempts == 1 for j in jobs.values()),
            "rows": store.count(), "per_agent": sorted(per_agent.values(), reverse=True)}


def search_run(url: str | None, n_agents: int, trials: int, budget_ms: float, root: Path) -> dict[str, Any]:
    """A tiny search measured by N agents: its wall time and the time it spent waiting for them."""
    from nas.rundir import RunDir

    db = fresh_database(url, root)
    env = {**os.environ, "NAS_CACHE_DIR": str(root / f"cache-s{n_agents}")}
    procs = start_agents(db, n_agents, env, root)
    try:
        proc = subprocess.run([sys.executable, "-m", "nas.cli", *SEARCH, "--trials", str(trials), "--target",
                               f"{NAME}={budget_ms:g}", "--latency-db", db, "--run-dir",
                               str(root / f"run-{n_agents}")], env=env, capture_output=True, text=True, check=False)
    finally:
        stop_agents(procs)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"search failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)  # printed with --json also when nothing fits (exit 3)
    this_run = summary.get("this_run", {})
    trained = sum(1 for row in RunDir.load(root / f"run-{n_agents}").trials if row.trained)
    return {"agents": n_agents, "trials": trials, "trained": trained, "wall_s": summary.get("wall_s"),
            "target_wait_s": this_run.get("target_wait_s"), "measure_s": summary.get("measure_s"),
            "train_s": summary.get("train_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="PostgreSQL server URL (a fresh database per run); default: SQLite files")
    parser.add_argument("--agents", default="1,2,4", help="agent counts (default 1,2,4)")
    parser.add_argument("--jobs", type=int, default=24, help="jobs queued at once per agent count (default 24)")
    parser.add_argument("--trials", type=int, default=8, help="trials of the search part (default 8)")
    parser.add_argument("--budget-ms", type=float, default=2.0, help="the search's budget (default 2)")
    args = parser.parse_args()
    counts = [int(c) for c in args.agents.split(",")]
    specs = networks(args.jobs)
    with tempfile.TemporaryDirectory(prefix="nas-agents-bench-") as tmp:
        root = Path(tmp)
        queue_rows = [queue_run(args.url, n, specs, root) for n in counts]
        search_rows = [search_run(args.url, n, args.trials, args.budget_ms, root) for n in counts]
    from latency_db.fingerprint import cpu_fingerprint

    cpu = cpu_fingerprint(1)["key"]
    print(f"CPU: {cpu['cpu_model']} family {cpu['cpu_family']} model {cpu['cpu_model_number']}, "
          f"ISA {' '.join(cpu['isa'])}, {os.cpu_count()} logical CPUs; "
          f"database: {'PostgreSQL' if args.url else 'SQLite'}\n")
    print("| agents | jobs | wall s | jobs/min | every job done once | latency rows | jobs per agent |")
    print("|---|---|---|---|---|---|---|")
    for r in queue_rows:
        print(f"| {r['agents']} | {r['jobs']} | {r['wall_s']} | {r['jobs_per_min']} | {r['done_once']} | "
              f"{r['rows']} | {', '.join(map(str, r['per_agent']))} |")
    print("\n| agents | search trials | trained | search wall s | waiting for agents s | training s |")
    print("|---|---|---|---|---|---|")
    for r in search_rows:
        print(f"| {r['agents']} | {r['trials']} | {r['trained']} | {r['wall_s']} | {r['target_wait_s']} | "
              f"{r['train_s']} |")


if __name__ == "__main__":
    main()
