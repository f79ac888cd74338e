"""Scale-out: several `nas search` processes on one study, on a real PostgreSQL server or a journal file.

Each worker has its own run dir and contributes K trials; they share the Optuna study and the
latency database. A worker killed with SIGKILL after its measurement (while it trains) loses only
that trial: the heartbeat goes stale, the next worker to ask fails it and runs it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from tiny import NO_FINALISTS

from nas.training.train_cache import TABLE as TRAIN_TABLE

pytestmark = [pytest.mark.slow]

TINY = ["--task", "sr2x", "--input-size", "32x48", "--budget-ms", "2", "--train-steps", "20", "--seed", "0",
        "--backend", "onnxruntime", "--no-report", "--no-export", "--json", *NO_FINALISTS]
HEARTBEAT = (1, 3)  # interval, grace period (s): a dead worker's trial is stale after 3 s


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nas.cli", "search", *TINY, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def finish(proc: subprocess.Popen, timeout: float = 300) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out)


def fresh_database(postgres_url: str) -> str:
    """A new empty database on the session's server, so each test starts from nothing."""
    import sqlalchemy as sa

    name = f"nas_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


def load_trials(storage: Any, study: str) -> list[Any]:
    import optuna

    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def finished(trials: list[Any]) -> list[Any]:
    """The finished trials, after checking that every other one is a warm start (an enqueued reference net)
    still WAITING: workers whose shares add up to fewer trials than the warm starts leave the rest queued
    for the study's next worker. None may be RUNNING, and no retry of a killed trial may be left waiting."""
    rest = [t for t in trials if not t.state.is_finished()]
    assert all(t.state.name == "WAITING" and t.user_attrs.get("reference") and "failed_trial" not in t.system_attrs
               for t in rest), f"a trial was left RUNNING or WAITING: {[(t.number, t.state.name) for t in rest]}"
    return [t for t in trials if t.state.is_finished()]


def counted(trials: list[Any], run_dir: Path) -> list[Any]:
    """The trials a run dir counts toward its K (what nas.search.Search._my_trials counts)."""
    from nas.search.storage import retried_trial_numbers

    retried = retried_trial_numbers(trials)
    here = str(run_dir.resolve())
    return [t for t in trials if t.user_attrs.get("run_dir") == here and t.state.is_finished()
            and t.number not in retried]


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"NAS_CACHE_DIR": str(tmp_path / "cache"), "NAS_HEARTBEAT_S": ",".join(map(str, HEARTBEAT))}


@pytest.mark.postgres
def test_three_workers_finish_exactly_3k_trials_with_one_latency_row_per_arch(postgres_url: str,
                                                                                  tmp_path: Path) -> None:
    import sqlalchemy as sa

    k = 2
    url = fresh_database(postgres_url)
    shared = ["--storage", url, "--study", "three", "--latency-db", url, "--trials", str(k)]
    run_dirs = [tmp_path / f"w{i}" for i in range(3)]
    procs = [start([*shared, "--run-dir", str(d)], env_for(tmp_path)) for d in run_dirs]
    summaries = [finish(p) for p in procs]

    assert [s["this_run"]["trials"] for s in summaries] == [k, k, k]
    trials = finished(load_trials(url, "three"))
    assert len(trials) == 3 * k
    for d in run_dirs:
        assert len(counted(trials, d)) == k
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT arch_id, count(*) FROM latency GROUP BY arch_id")).all()
        trained = {r[0] for r in conn.execute(sa.text(f"SELECT arch_id FROM {TRAIN_TABLE}"))}
    engine.dispose()
    per_arch = dict(rows)
    assert all(n == 1 for n in per_arch.values()), f"duplicated latency rows: {per_arch}"
    for t in trials:  # no lost result: every trial's latency is stored, every completed one's training too
        assert t.user_attrs["arch_id"] in per_arch
        if t.state.name == "COMPLETE":
            assert t.user_attrs["arch_id"] in trained
            assert t.value == t.user_attrs["train"]["psnr_gain_db"]


@pytest.mark.postgres
def test_a_worker_killed_while_training_has_its_trial_retried(postgres_url: str, tmp_path: Path) -> None:
    from optuna.trial import TrialState

    k = 3
    url = fresh_database(postgres_url)
    shared = ["--storage", url, "--study", "kill", "--latency-db", url, "--trials", str(k)]
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = start([*shared, "--run-dir", str(a_dir)], env_for(tmp_path))
    b = start([*shared, "--run-dir", str(b_dir)], env_for(tmp_path))

    victim = None
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline and a.poll() is None:
        time.sleep(0.1)
        if not (a_dir / "run.json").exists():  # written once the study exists
            continue
        trials = load_trials(url, "kill")
        training = [t for t in trials if t.state == TrialState.RUNNING
                    and t.user_attrs.get("run_dir") == str(a_dir.resolve())
                    and "latency" in t.user_attrs and "train" not in t.user_attrs]
        if training:
            a.send_signal(signal.SIGKILL)
            victim = training[0].number
    assert victim is not None, "worker A never reached training"
    a.wait(timeout=30)
    assert a.returncode == -signal.SIGKILL
    time.sleep(HEARTBEAT[1] + 1)  # its heartbeat is stale now
    again = start([*shared, "--run-dir", str(a_dir)], env_for(tmp_path))  # rerunning resumes to K
    finish(b)
    finish(again)

    trials = finished(load_trials(url, "kill"))
    by_number = {t.number: t for t in trials}
    assert by_number[victim].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == by_number[victim].params
    assert len(counted(trials, a_dir)) == k and len(counted(trials, b_dir)) == k
    assert len(trials) == 2 * k + 1  # the lost trial is the only extra one
    assert victim not in [t.number for t in counted(trials, a_dir)]


def test_two_local_workers_share_a_journal_file(tmp_path: Path) -> None:
    import optuna

    k = 2
    journal = tmp_path / "study.journal"
    db = tmp_path / "latency.db"
    # no warm starts, so 4 random draws only: a budget any of them meets (2 ms missed them all once on a
    # slow CPU, exit 3), since what is tested is the shared journal, not the budget
    shared = ["--storage", f"journal:{journal}", "--study", "local", "--latency-db", str(db), "--trials", str(k),
              "--no-warm-start", "--budget-ms", "1000"]
    run_dirs = [tmp_path / "w0", tmp_path / "w1"]
    procs = [start([*shared, "--run-dir", str(d)], env_for(tmp_path)) for d in run_dirs]
    summaries = [finish(p) for p in procs]

    assert [s["this_run"]["trials"] for s in summaries] == [k, k]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = load_trials(storage, "local")
    assert len(trials) == 2 * k and all(t.state.is_finished() for t in trials)
    for d in run_dirs:
        assert len(counted(trials, d)) == k
    archs = [t.user_attrs["arch_id"] for t in trials]
    assert len(set(archs)) == len(archs), "workers started with the same command sampled the same candidates"
