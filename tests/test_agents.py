"""Latency agents and searches for several devices (issue #27), with real processes on real databases.

An agent timing with ``--threads 1`` is a different device (another device key) from this machine's 2-thread
default, so one machine runs agents and searches whose candidates are measured under another key. Where a test
needs an agent to be in the middle of a job, it holds the CPU's device lock (a file lock every process on the
machine shares): the agent claims the job, then waits for the lock. No test asserts a wall-clock time.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_scaleout import fresh_database
from tiny import run_nas

from latency_db import LatencyKey, LatencyStore, Workload
from latency_db.jobs import DONE, FAILED, RUNNING, JobQueue
from latency_db.lock import DeviceLock
from search_spaces import get_space

pytestmark = pytest.mark.slow
# agents beat every 0.3 s; a job's lease (and an agent's silence) lasts 4 s: longer than the 2 s a search waits
# before it says what it waits for, so a search whose agent is killed mid-job always says it
TIMING = "0.3,4"
SEARCH = ["search", "--task", "sr2x", "--input-size", "32x48", "--trials", "2", "--train-steps", "10", "--seed", "0",
          "--backend", "onnxruntime", "--no-export"]
BOUND_S = 120      # the longest any wait below may take before the test fails (never reached when it passes)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty latency database: a new SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'latency.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """One cache dir (and so one device lock) for the agents, the searches and this process; short leases."""
    extra = {"NAS_CACHE_DIR": str(tmp_path / "cache"), "NAS_AGENT_HEARTBEAT_S": TIMING}
    for k, v in extra.items():
        monkeypatch.setenv(k, v)
    return extra


class Agents:
    """Agent processes started by a test, stopped (SIGTERM, then checked) at its end."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.procs: list[subprocess.Popen] = []
        self.queue = JobQueue(LatencyStore(url))

    def start(self, name: str, threads: int = 1) -> tuple[subprocess.Popen, str]:
        """Start ``nas agent`` and wait for its registration; returns the process and its agent id."""
        log = open(self.folder / f"agent-{len(self.procs)}.log", "w")  # noqa: SIM115  closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "agent", "--name", name, "--latency-db", self.url,
                                 "--backend", "onnxruntime", "--threads", str(threads)],
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        found: list[str] = []

        def registered() -> bool:
            assert proc.poll() is None, self.log(proc)
            found[:] = [a.agent_id for a in self.queue.live_agents(name) if a.pid == proc.pid]
            return bool(found)

        wait_until(registered, f"agent {name} to register")
        return proc, found[0]

    def log(self, proc: subprocess.Popen) -> str:
        return (self.folder / f"agent-{self.procs.index(proc)}.log").read_text()

    def stop(self, proc: subprocess.Popen) -> int:
        """SIGTERM: the agent finishes its job, deregisters and exits 0."""
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=BOUND_S)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def agents(db_url: str, tmp_path: Path, env: dict[str, str]) -> Iterator[Agents]:
    started = Agents(db_url, tmp_path)
    yield started
    started.close()


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after BOUND_S (a bound on a hang, not a timing)."""
    deadline = time.monotonic() + BOUND_S
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def references(n: int) -> list[Any]:
    """``n`` reference nets that tile a 32x48 input: real specs for the jobs."""
    specs = list(get_space("sr2x").fitting_references((32, 48))[0].values())
    assert len(specs) >= n
    return specs[:n]


WORKLOAD = Workload(height=32, width=48, scale=2).to_dict()


def submit(queue: JobQueue, name: str, specs: list[Any]) -> list[int]:
    protocol = queue.live_agents(name)[0].protocol
    return [queue.submit(name, protocol, s.arch_id, s.canonical_json(), WORKLOAD) for s in specs]


def threads_of(store: LatencyStore, key_json: str) -> int:
    """The thread count in the device key of the stored row of ``key_json``."""
    key = LatencyKey.from_json(key_json)
    assert store.get(key) is not None
    return json.loads(key.device)["threads"]


# ---------------------------------------------------------------------- the queue, with agent processes
def test_two_agents_on_one_name_share_the_jobs_and_none_is_done_twice(agents: Agents) -> None:
    queue, store = agents.queue, LatencyStore(agents.url)
    a, a_id = agents.start("farm")
    b, b_id = agents.start("farm")
    specs = references(4)
    with DeviceLock("cpu"):  # each agent claims one job, then waits for the device: both are busy at once
        ids = submit(queue, "farm", specs)
        wait_until(lambda: len({j.agent_id for j in queue.states(ids).values() if j.state == RUNNING}) == 2,
                   "both agents to hold a job")
        held_by_a = [i for i, j in queue.states(ids).items() if j.agent_id == a_id]
        a.send_signal(signal.SIGTERM)  # mid-job: the agent finishes the job in hand, claims no other, deregisters
    assert a.wait(timeout=BOUND_S) == 0, agents.log(a)
    wait_until(lambda: all(j.finished for j in queue.states(ids).values()), "the jobs to finish")
    jobs = queue.states(ids)
    assert all(j.state == DONE and j.attempts == 1 for j in jobs.values()), jobs
    assert [i for i, j in jobs.items() if j.agent_id == a_id] == held_by_a and len(held_by_a) == 1
    assert {j.agent_id for j in jobs.values()} == {a_id, b_id}
    assert store.count() == len(specs)                        # one row per job: none measured twice
    assert all(threads_of(store, j.key_json) == 1 for j in jobs.values())
    assert agents.stop(b) == 0                                # SIGTERM while idle: deregistered, exit 0
    listed = {x.agent_id: x for x in queue.list_agents("farm")}
    assert (listed[a_id].jobs_done, listed[b_id].jobs_done) == (1, len(specs) - 1)
    assert all(x.stopped_at is not None for x in listed.values())
    shown = run_nas("db", "agents", "--latency-db", agents.url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert {x["agent_id"]: x["jobs_done"] for x in json.loads(shown.stdout)["agents"]} == {
        a_id: listed[a_id].jobs_done, b_id: listed[b_id].jobs_done}


def test_a_job_of_an_agent_killed_mid_job_is_claimed_again_after_its_lease(agents: Agents) -> None:
    queue, store = agents.queue, LatencyStore(agents.url)
    a, _ = agents.start("board")
    with DeviceLock("cpu"):  # the agent claims the job and waits for the device: killed mid-job
        [job_id] = submit(queue, "board", references(1))
        wait_until(lambda: queue.states([job_id])[job_id].state == RUNNING, "the agent to claim the job")
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=BOUND_S)
        b, b_id = agents.start("board")
    wait_until(lambda: queue.states([job_id])[job_id].finished, "the job to be claimed again and finished")
    job = queue.states([job_id])[job_id]
    assert job.state == DONE and job.agent_id == b_id and job.attempts == 2
    assert threads_of(store, job.key_json) == 1 and store.count() == 1
    assert [x.agent_id for x in queue.live_agents("board")] == [b_id]    # the killed one went silent

    bad = queue.submit("board", job.protocol, "0" * 64, '{"head": "rm -rf /"}', WORKLOAD)  # fails validation
    wait_until(lambda: queue.states([bad])[bad].finished, "the invalid job to fail")
    failed = queue.states([bad])[bad]
    assert failed.state == FAILED and failed.error.startswith("invalid spec:") and "\n" not in failed.error
    assert failed.key_json is None and store.count() == 1
    assert agents.stop(b) == 0


# ---------------------------------------------------------------------- searches
def trials_csv(run_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(run_dir / "trials.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_a_search_measures_on_a_one_thread_agent_and_waits_out_a_killed_one(agents: Agents, tmp_path: Path,
                                                                              env: dict[str, str]) -> None:
    queue, store = agents.queue, LatencyStore(agents.url)
    a, _ = agents.start("cpu1")
    run_dir = tmp_path / "run"
    with DeviceLock("cpu"):
        search = subprocess.Popen([sys.executable, "-m", "nas.cli", *SEARCH, "--target", "cpu1=1000",
                                   "--latency-db", agents.url, "--run-dir", str(run_dir), "--no-report"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        wait_until(lambda: any(j.state == RUNNING for j in queue.jobs_of("cpu1")), "the search's first job")
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=BOUND_S)
        agents.start("cpu1")
    _, err = search.communicate(timeout=600)
    assert search.returncode == 0, err
    assert "waiting" in err and "of 'cpu1'" in err                # it said what it waited for
    jobs = queue.jobs_of("cpu1")
    assert jobs[0].attempts == 2 and all(j.state == DONE for j in jobs)
    assert {threads_of(store, j.key_json) for j in jobs} == {1}    # measured under the agent's device key only
    assert store.count() == len(jobs)                              # nothing was timed on this machine
    columns, rows = trials_csv(run_dir)
    assert "latency_ms@cpu1" in columns and "rejected_by" in columns and len(rows) == 2
    assert all(r["latency_ms@cpu1"] == r["latency_ms"] != "" and r["rejected_by"] == "" for r in rows)
    meta = json.loads((run_dir / "run.json").read_text())
    assert [t["name"] for t in meta["targets"]] == ["cpu1"] and "1 threads" in meta["targets"][0]["devices"][0]


def test_two_targets_with_different_budgets_each_reject_what_misses_theirs(agents: Agents, tmp_path: Path) -> None:
    store = LatencyStore(agents.url)
    agents.start("cpu1")
    db = ["--latency-db", agents.url]
    first = run_nas(*SEARCH, "--target", "cpu1=1000", "--target", "local=1000", *db, "--run-dir", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    columns, rows = trials_csv(tmp_path / "a")
    assert {"latency_ms@cpu1", "latency_ms@local"} <= set(columns)
    assert all(r["latency_ms@cpu1"] and r["latency_ms@local"] and r["trained"] == "True" for r in rows)
    threads = sorted(json.loads(LatencyKey.from_json(r["key_json"]).device)["threads"] for r in store.iter_rows())
    assert threads == [1, 1, 2, 2]                                 # each candidate on both devices, once each
    assert 'id="targets"' in (tmp_path / "a" / "report.html").read_text()   # one front per target

    for budgets, rejecter in ((["cpu1=0.0001", "local=1000"], "cpu1"), (["cpu1=1000", "local=0.0001"], "local")):
        run_dir = tmp_path / rejecter
        argv = [a for b in budgets for a in ("--target", b)]
        proc = run_nas(*SEARCH, *argv, *db, "--run-dir", str(run_dir), "--no-report")
        assert proc.returncode == 3, proc.stderr                   # nothing fits every budget
        assert f"{rejecter} (" in proc.stderr.splitlines()[-1] and "rejected 2" in proc.stderr.splitlines()[-1]
        _, rows = trials_csv(run_dir)
        assert [r["rejected_by"] for r in rows] == [rejecter, rejecter]
        assert all(r["over_budget"] == "True" and r["trained"] == "False" for r in rows)
    assert store.count() == 4 and len(agents.queue.jobs_of("cpu1")) == 2   # the later searches: cache hits


def test_a_target_without_a_live_agent_is_one_line_exit_2_and_writes_nothing(tmp_path: Path,
                                                                            env: dict[str, str]) -> None:
    url = f"sqlite:///{tmp_path / 'latency.db'}"
    run_dir = tmp_path / "run"
    for argv, expected in ((["--target", "nobody=1"], "--target nobody: no live agent"),
                           (["--target", "cpu1"], "--target cpu1 has no budget"),
                           (["--target", "a b=1"], "agent name"),
                           (["--target", "x=1", "--target", "x=2"], "--target x is given twice")):
        proc = run_nas(*SEARCH, *argv, "--latency-db", url, "--run-dir", str(run_dir))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], proc.stderr
        assert not run_dir.exists()
    proc = run_nas("agent", "--name", "local", "--latency-db", url)
    assert proc.returncode == 2 and "reserved" in proc.stderr
