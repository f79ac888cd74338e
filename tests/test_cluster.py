"""The README's "Running on a cluster" recipe, run as written by three workers on a real PostgreSQL.

The commands are read from the README's code block itself; the test only points them at its own
server, gives each worker a host name, and appends flags that make the search tiny. Report and
export stay on: every worker must exit 0 with the whole study's report and the same winner.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_scaleout import finished, fresh_database, load_trials
from tiny import NO_FINALISTS

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

README = Path(__file__).resolve().parent.parent / "README.md"
# one trial per worker: the recipe's claims (every worker exits 0, reports the whole study and exports the same
# winner) hold for any share, and each of the three workers still runs a trial of its own
TINY = ["--trials", "1", "--train-steps", "20", "--input-size", "32x48", "--backend", "onnxruntime", "--seed", "0",
        *NO_FINALISTS]
HEARTBEAT = "1,3"


def recipe() -> list[str]:
    """The bash lines of the README's cluster recipe."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Running on a cluster"):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "the README's cluster section has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def worker_script(url: str, host: str) -> str:
    lines = [line.replace("postgresql://nas@db-host/nas", url) for line in recipe()]
    assert lines[-1].startswith("nas search "), lines
    lines[-1] += " " + " ".join(TINY)
    return "\n".join(["set -e", f"export HOSTNAME={host}", *lines])


def run_workers(url: str, cwd: Path, hosts: list[str]) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "NAS_CACHE_DIR": str(cwd / "cache"), "NAS_HEARTBEAT_S": HEARTBEAT,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    procs = [subprocess.Popen(["bash", "-c", worker_script(url, h)], cwd=cwd, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for h in hosts]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def report_trials(report: Path) -> set[int]:
    page = report.read_text(encoding="utf-8")
    data = re.search(r'<script type="application/json" id="nas-data">(.*?)</script>', page, re.DOTALL)
    assert data
    return {int(n) for n in json.loads(data.group(1))["trials"]}


def test_the_readme_cluster_recipe_finishes_on_every_worker(postgres_url: str, tmp_path: Path) -> None:
    url = fresh_database(postgres_url)
    hosts = ["node-a", "node-b", "node-c"]
    results = run_workers(url, tmp_path, hosts)
    for host, r in zip(hosts, results):
        assert r.returncode == 0, f"{host}: {r.stderr}"

    study = finished(load_trials(url, "sr2x-4ms"))
    numbers = {t.number for t in study}
    assert len(numbers) >= 3  # 3 workers x 1 trial
    runs = [tmp_path / "runs" / h for h in hosts]
    for run in runs:
        assert report_trials(run / "report.html") == numbers, run
        with open(run / "trials.csv", newline="", encoding="utf-8") as fh:
            workers = {row["worker"] for row in csv.DictReader(fh)}
        assert workers == {str(r.resolve()) for r in runs}  # which worker ran each trial
    winners = [tree(run / "best") for run in runs]
    assert winners[0] and all(w == winners[0] for w in winners[1:]), "the workers' best/ folders differ"
    best = json.loads(winners[0]["export.json"])
    feasible = [t for t in study if t.state.name == "COMPLETE"]
    assert best["psnr_gain_db"] == pytest.approx(max(t.value for t in feasible), rel=1e-5)  # trials.csv: 6 digits

    # the same study from the shared storage alone: no worker's disk
    env = {**os.environ, "NAS_CACHE_DIR": str(tmp_path / "cache")}
    nas = [sys.executable, "-m", "nas.cli"]
    exported = subprocess.run([*nas, "export", "--storage", url, "--study", "sr2x-4ms", "--latency-db", url,
                               "--out", str(tmp_path / "from_storage")], env=env, capture_output=True, text=True,
                              check=False)
    assert exported.returncode == 0, exported.stderr
    assert tree(tmp_path / "from_storage") == winners[0]
    reported = subprocess.run([*nas, "report", str(tmp_path / "rebuilt"), "--storage", url, "--study", "sr2x-4ms",
                               "--latency-db", url], env=env, capture_output=True, text=True, check=False)
    assert reported.returncode == 0, reported.stderr
    assert report_trials(tmp_path / "rebuilt" / "report.html") == numbers


def test_workers_ride_out_a_postgresql_restart(postgres_server: Any, tmp_path: Path) -> None:
    """pg_ctl restart in the middle of a 3-worker search: every worker retries and finishes; no trial is
    lost or duplicated, and every architecture has one latency row."""
    import sqlalchemy as sa
    from test_scaleout import counted, env_for, finish, start

    k = 2
    url = fresh_database(postgres_server.url)
    shared = ["--storage", url, "--study", "restart", "--latency-db", url, "--trials", str(k)]
    run_dirs = [tmp_path / f"w{i}" for i in range(3)]
    procs = [start([*shared, "--run-dir", str(d)], env_for(tmp_path)) for d in run_dirs]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.5)
        if (all((d / "run.json").exists() for d in run_dirs)
                and len([t for t in load_trials(url, "restart") if t.state.is_finished()]) >= 2):
            break
    assert all(p.poll() is None for p in procs), "a worker ended before the restart"
    postgres_server.restart()
    summaries = [finish(p) for p in procs]

    assert [s["this_run"]["trials"] for s in summaries] == [k, k, k]
    trials = finished(load_trials(url, "restart"))
    assert len(trials) == 3 * k, f"lost or duplicated trials: {len(trials)} for {3 * k}"
    for d in run_dirs:
        assert len(counted(trials, d)) == k
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        per_arch = dict(conn.execute(sa.text("SELECT arch_id, count(*) FROM latency GROUP BY arch_id")).all())
    engine.dispose()
    assert all(n == 1 for n in per_arch.values()), f"duplicated latency rows: {per_arch}"
    assert {t.user_attrs["arch_id"] for t in trials} <= set(per_arch)


def test_a_worker_whose_disk_fills_stops_with_one_line_and_the_others_finish(tmp_path: Path) -> None:
    from test_scaleout import env_for, finish, start

    k = 2
    shared = ["--storage", f"journal:{tmp_path / 'study.journal'}", "--study", "full", "--latency-db",
              str(tmp_path / "latency.db"), "--trials", str(k)]
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = start([*shared, "--run-dir", str(a_dir)], env_for(tmp_path))
    b = start([*shared, "--run-dir", str(b_dir)], env_for(tmp_path))
    deadline = time.monotonic() + 120
    while not (b_dir / "run.json").exists() and time.monotonic() < deadline and b.poll() is None:
        time.sleep(0.05)
    (b_dir / "trials.csv.tmp").symlink_to("/dev/full")  # from now on every trials.csv write fails: ENOSPC

    _, err = b.communicate(timeout=300)
    assert b.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], err
    assert finish(a)["this_run"]["trials"] == k


def test_a_worker_killed_at_any_moment_leaves_nothing_half_written(postgres_url: str, tmp_path: Path) -> None:
    """SIGKILL a worker three times at different moments (while it measures, trains or writes), restarting it
    each time: every trial it lost is retried, nothing is left RUNNING, and every file of its run dir reads.
    (A reference net enqueued as a warm start may still wait: 3 trials run fewer than the 4 references.)"""
    import signal

    from test_scaleout import HEARTBEAT, counted, env_for, finish, start

    from nas.rundir import RunDir

    k = 3
    url = fresh_database(postgres_url)
    shared = ["--storage", url, "--study", "kills", "--latency-db", url, "--trials", str(k)]
    run = tmp_path / "victim"
    for delay in (6.0, 9.0, 12.0):  # seconds after start: import, setup, measuring, training, writing
        proc = start([*shared, "--run-dir", str(run)], env_for(tmp_path))
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    # the last killed worker's trial is stale now (the earlier ones' are older): the next ask fails them all and
    # queues their retries, which the last run must do before it exits
    time.sleep(HEARTBEAT[1] + 1)
    assert finish(start([*shared, "--run-dir", str(run)], env_for(tmp_path)))["this_run"]["trials"] >= 0

    trials = load_trials(url, "kills")
    from optuna.trial import TrialState

    assert not [t.number for t in trials if t.state == TrialState.RUNNING], "a trial was left RUNNING"
    lost = [t.number for t in trials if t.state == TrialState.WAITING and "failed_trial" in t.system_attrs]
    assert not lost, f"retries of killed trials were never run: {lost}"
    assert len(counted(trials, run)) >= k
    loaded = RunDir.load(run)
    assert {r.number for r in loaded.trials} == {t.number for t in trials if t.state.is_finished()}
    for row in loaded.trials:
        if row.arch_id:
            loaded.spec(row.arch_id)
            loaded.record(row.arch_id, "latency.json")
            if row.trained:
                assert loaded.record(row.arch_id, "train.json") is not None
                loaded.weights(row.arch_id)
