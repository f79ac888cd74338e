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
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from baseline_nets import LumaShuffle, onnx_bytes
from sqlalchemy import create_engine, text
from test_scaleout import fresh_database
from tiny import NO_FINALISTS, run_nas

from latency_db import LatencyKey, LatencyStore, Workload
from latency_db.graph import OnnxGraph
from latency_db.graph_store import graph_job_spec, put_graph
from latency_db.jobs import DONE, FAILED, GRAPH, MAX_ATTEMPTS, RUNNING, JobQueue
from latency_db.keys import device_template, key_from_template, latency_key
from latency_db.lock import DeviceLock
from nas.errors import UsageError
from nas.rundir import TRIALS_CSV_COLUMNS, RunDir, RunDirWriter, trial_row
from nas.target import Budget, target_budgets
from nas.trial_record import TrialRecord
from search_spaces import get_space

# agents beat every 0.3 s; a job's lease (and an agent's silence) lasts 4 s: longer than the 2 s a search waits
# before it says what it waits for, so a search whose agent is killed mid-job always says it
TIMING = "0.3,4"
SEARCH = ["search", "--task", "sr2x", "--input-size", "32x48", "--trials", "2", "--train-steps", "20", "--seed", "0",
          "--backend", "onnxruntime", "--no-export", *NO_FINALISTS]
ONE_TRIAL = ["--trials", "1"]  # after SEARCH (the last --trials counts): where one candidate shows what is tested
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
    """Agent processes on each database (the queue's own behaviour: leases, claims, failover)."""
    started = Agents(db_url, tmp_path)
    yield started
    started.close()


@pytest.fixture
def pg_agents(postgres_url: str, tmp_path: Path, env: dict[str, str]) -> Iterator[Agents]:
    """Agent processes on PostgreSQL alone, the database agents on other machines share: for what the search does
    with their answers (targets, budgets, close calls, timeouts, failures), which does not depend on the queue's
    database (the queue's contract runs on both, above and in the in-process tests below)."""
    started = Agents(fresh_database(postgres_url), tmp_path)
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
@pytest.mark.slow
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
    shown = run_nas("db", "agents", "--latency-db", agents.url)
    assert shown.returncode == 0 and "0 live agent(s), 2 registered" in shown.stdout
    assert shown.stdout.count("farm") == 2 and shown.stdout.count("stopped") == 2


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.postgres
def test_an_agent_rides_out_a_database_restart(postgres_server: Any, tmp_path: Path, env: dict[str, str]) -> None:
    agents = Agents(fresh_database(postgres_server.url), tmp_path)
    try:
        a, a_id = agents.start("board")
        protocol = agents.queue.live_agents("board")[0].protocol
        postgres_server.restart()        # the agent's claims and beats retry on the lost connections
        [spec] = references(1)
        job_id = agents.queue.submit("board", protocol, spec.arch_id, spec.canonical_json(), WORKLOAD)
        wait_until(lambda: agents.queue.states([job_id])[job_id].finished, "the job after the restart")
        job = agents.queue.states([job_id])[job_id]
        assert job.state == DONE and job.agent_id == a_id and job.attempts == 1
        assert agents.stop(a) == 0, agents.log(a)
    finally:
        agents.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_an_agent_needs_only_the_grants_the_docs_list(postgres_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    """docs/agents.md's grants, run as written: an agent logged in with them registers, measures and finishes."""
    url = fresh_database(postgres_url)
    LatencyStore(url).close()                 # the tables, made by the owner
    docs = (Path(__file__).resolve().parent.parent / "docs" / "agents.md").read_text()
    grants = re.search(r"```sql\n(.*?)```", docs, re.DOTALL)
    assert grants
    role = f"agent_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for statement in grants.group(1).split(";"):
            if statement.strip():
                conn.execute(text(re.sub(r"\bnas_agent\b", role, statement).replace("'...'", "'x'")))
    admin.dispose()
    agents = Agents(url.replace("postgres@", f"{role}:x@"), tmp_path)
    try:
        agents.start("board")
        owner = JobQueue(LatencyStore(url))   # a search submits with its own account
        [job_id] = submit(owner, "board", references(1))
        graph = OnnxGraph(data=onnx_bytes(LumaShuffle(), 1), channels=1, scale=2, io_dtype="fp32", name="mine")
        put_graph(LatencyStore(url), graph.data)   # a --baseline graph: the agent reads it from nas_graphs
        graph_job = owner.submit("board", owner.live_agents("board")[0].protocol, graph.arch_id,
                                 graph_job_spec(graph), {**WORKLOAD, "channels": 1}, GRAPH)
        wait_until(lambda: all(j.finished for j in owner.states([job_id, graph_job]).values()), "the jobs")
        states = owner.states([job_id, graph_job])
        assert (states[job_id].state, states[graph_job].state) == (DONE, DONE), states[graph_job].error
    finally:
        agents.close()


# ---------------------------------------------------------------------- searches
def trials_csv(run_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(run_dir / "trials.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.slow
def test_a_search_measures_on_a_one_thread_agent_and_waits_out_a_killed_one(agents: Agents, tmp_path: Path,
                                                                              env: dict[str, str]) -> None:
    queue, store = agents.queue, LatencyStore(agents.url)
    a, _ = agents.start("cpu1")
    run_dir = tmp_path / "run"
    with DeviceLock("cpu"):
        search = subprocess.Popen([sys.executable, "-m", "nas.cli", *SEARCH, *ONE_TRIAL, "--target", "cpu1=1000",
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
    assert "latency_ms@cpu1" in columns and "rejected_by" in columns and len(rows) == 1
    assert all(r["latency_ms@cpu1"] == r["latency_ms"] != "" and r["rejected_by"] == "" for r in rows)
    meta = json.loads((run_dir / "run.json").read_text())
    assert [t["name"] for t in meta["targets"]] == ["cpu1"] and "1 threads" in meta["targets"][0]["devices"][0]


@pytest.mark.slow
@pytest.mark.postgres
def test_a_search_stops_with_one_line_when_no_agent_finishes_within_the_timeout(pg_agents: Agents,
                                                                                 tmp_path: Path) -> None:
    queue = pg_agents.queue
    pg_agents.start("cpu1")
    with DeviceLock("cpu"):  # the agent claims the job and waits for the device past the search's patience
        proc = run_nas(*SEARCH, "--target", "cpu1=1000", "--target-timeout", "1", "--latency-db", pg_agents.url,
                       "--run-dir", str(tmp_path / "run"), "--no-report")
        wait_until(lambda: queue.jobs_of("cpu1")[0].state == RUNNING, "the agent to hold the job")
        [job] = queue.jobs_of("cpu1")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stderr
    assert last.startswith("nas search: error: trial 0: no agent finished job") and "--target-timeout 1 s" in last
    assert job.attempts == 1                                    # still in hand: the agent finishes it later
    wait_until(lambda: queue.states([job.id])[job.id].state == DONE, "the agent to finish the job")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_close_call_is_visited_again_on_the_agents_device(pg_agents: Agents, tmp_path: Path) -> None:
    pg_agents.start("cpu1")
    db = ["--latency-db", pg_agents.url, *ONE_TRIAL, "--no-report"]
    first = run_nas(*SEARCH, "--target", "cpu1=1000", *db, "--run-dir", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    [row] = trials_csv(tmp_path / "a")[1]
    assert row["latency_visits"] == "1"                            # far under its budget: one visit decides
    again = run_nas(*SEARCH, "--target", f"cpu1={row['latency_ms@cpu1']}", *db, "--run-dir", str(tmp_path / "b"))
    assert again.returncode in (0, 3), again.stderr                # at the budget's edge: it may fit or not
    [row] = trials_csv(tmp_path / "b")[1]
    kinds = [j.kind for j in pg_agents.queue.jobs_of("cpu1")]
    assert kinds[0] == "measure" and set(kinds[1:]) == {"refine"}  # the second search: cache hit, then visits
    assert all(j.state == DONE for j in pg_agents.queue.jobs_of("cpu1"))
    assert int(row["latency_visits"]) == len(kinds) >= 2          # each visit of the row on the agent's device


def error_row(message: str) -> dict[str, Any]:
    """A stored verdict that the network does not build (as measure_or_get stores a BuildError)."""
    return {"summary": "x", "device": "X", "status": "error", "error": message, "median_ms": None, "p10_ms": None,
            "p90_ms": None, "p99_ms": None, "mean_ms": None, "cov": None, "n_samples": 0, "samples_json": "[]",
            "unstable": False, "attempts": 0, "build_s": None, "roofline_ms": None, "host": "h",
            "measured_at": "2026-01-01T00:00:00+00:00", "fingerprint_json": "{}", "details_json": "{}"}


@pytest.mark.slow
@pytest.mark.postgres
def test_a_network_that_does_not_build_on_a_target_fails_its_trial_like_a_local_one(pg_agents: Agents,
                                                                                     tmp_path: Path) -> None:
    _, agent_id = pg_agents.start("cpu1")
    [agent] = [a for a in pg_agents.queue.live_agents("cpu1") if a.agent_id == agent_id]
    store = LatencyStore(pg_agents.url)
    workload = Workload(height=32, width=48, scale=2, io_dtype=agent.io_dtype)
    for spec in references(2):   # the search's first two trials: verdicts stored under the agent's device key
        store.put(key_from_template(agent.key, spec.arch_id, workload), error_row("session build failed: no kernel"))
    proc = run_nas(*SEARCH, "--target", "cpu1=1000", "--latency-db", pg_agents.url, "--run-dir", str(tmp_path / "run"),
                   "--no-report")
    assert proc.returncode == 3 and "no candidate could be measured" in proc.stderr, proc.stderr
    _, rows = trials_csv(tmp_path / "run")
    assert [(r["state"], r["error"]) for r in rows] == [
        ("FAIL", "measurement failed on cpu1: session build failed: no kernel")] * 2
    assert pg_agents.queue.jobs_of("cpu1") == []                     # the stored verdict answered: no job


@pytest.mark.slow
@pytest.mark.postgres
def test_two_targets_with_different_budgets_each_reject_what_misses_theirs(pg_agents: Agents, tmp_path: Path) -> None:
    store = LatencyStore(pg_agents.url)
    pg_agents.start("cpu1")
    db = ["--latency-db", pg_agents.url, *ONE_TRIAL]
    first = run_nas(*SEARCH, "--target", "local=1000", "--target", "cpu1=1000", *db, "--run-dir", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    columns, rows = trials_csv(tmp_path / "a")
    assert columns[-3:] == ["latency_ms@local", "latency_ms@cpu1", "rejected_by"]
    assert any(r["verified"] == "True" for r in rows)             # local first: the winner re-timed here
    assert all(r["latency_ms@cpu1"] and r["latency_ms@local"] and r["trained"] == "True" for r in rows)
    threads = sorted(json.loads(LatencyKey.from_json(r["key_json"]).device)["threads"] for r in store.iter_rows())
    assert threads == [1, 2]                                       # the candidate on both devices, once each
    assert 'id="targets"' in (tmp_path / "a" / "report.html").read_text()   # one front per target

    for budgets, rejecter in ((["cpu1=0.0001", "local=1000"], "cpu1"), (["cpu1=1000", "local=0.0001"], "local")):
        run_dir = tmp_path / rejecter
        argv = [a for b in budgets for a in ("--target", b)]
        proc = run_nas(*SEARCH, *argv, *db, "--run-dir", str(run_dir), "--no-report")
        assert proc.returncode == 3, proc.stderr                   # nothing fits every budget
        assert f"{rejecter} (" in proc.stderr.splitlines()[-1] and "rejected 1" in proc.stderr.splitlines()[-1]
        _, rows = trials_csv(run_dir)
        assert [r["rejected_by"] for r in rows] == [rejecter]
        assert all(r["over_budget"] == "True" and r["trained"] == "False" for r in rows)
    assert store.count() == 2 and len(pg_agents.queue.jobs_of("cpu1")) == 1   # the later searches: cache hits


@pytest.mark.slow
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


# ---------------------------------------------------------------------- the queue in one process, and the contracts
def test_a_claim_is_leased_taken_again_when_it_expires_and_failed_after_the_last_attempt(db_url: str) -> None:
    queue = JobQueue(LatencyStore(db_url))
    key = {"backend": "onnxruntime", "backend_version": "1", "builder": {}, "device": {"kind": "cpu"},
           "protocol": "cpu-fast-v2", "io_dtype": "fp32"}
    a = queue.register("n", key, {"device": "X"}, lease_s=0.2)
    b = queue.register("n", key, {"device": "X"}, lease_s=0.2)
    other = queue.register("n", {**key, "protocol": "cpu-full-v2"}, {"device": "X"}, lease_s=0.2)
    [spec] = references(1)
    job_id = queue.submit("n", "cpu-fast-v2", spec.arch_id, spec.canonical_json(), WORKLOAD)
    assert queue.claim(other, "n", "cpu-full-v2") is None          # another protocol never takes it
    assert queue.claim(a, "n", "cpu-fast-v2").id == job_id
    assert queue.claim(b, "n", "cpu-fast-v2") is None              # leased: one agent at a time
    for attempt in range(2, MAX_ATTEMPTS + 1):
        wait_until(lambda: queue.now() > queue.states([job_id])[job_id].expires_at, "the lease to expire")
        claimed = queue.claim(b, "n", "cpu-fast-v2")
        assert claimed is not None and claimed.attempts == attempt and claimed.agent_id == b
    assert queue.finish(job_id, a, None, None) is False             # no longer a's: left alone
    wait_until(lambda: queue.now() > queue.states([job_id])[job_id].expires_at, "the last lease to expire")
    job = queue.states([job_id])[job_id]
    assert job.state == FAILED and "lease expired" in job.error
    assert queue.claim(a, "n", "cpu-fast-v2") is None


def test_an_agents_template_keys_its_rows() -> None:
    from latency_db import get_backend

    backend = get_backend("onnxruntime", threads=1)
    [spec] = references(1)
    workload = Workload(height=32, width=48, scale=2)
    assert key_from_template(device_template(backend), spec.arch_id, workload) == latency_key(spec, workload, backend)


def test_target_budgets() -> None:
    assert target_budgets([], 4.0, "median") == (Budget(4.0), ())
    first, targets = target_budgets([("gpu", 2.0), ("local", None)], 8.0, "p90")
    assert first == Budget(2.0, "p90") and [t.budget.limit_ms for t in targets] == [2.0, 8.0]
    for given, budget_ms, message in (([], None, "--budget-ms is required"), ([("a", None)], None, "has no budget"),
                                      ([("a", 1.0), ("a", 2.0)], None, "given twice")):
        with pytest.raises(UsageError, match=message):
            target_budgets(given, budget_ms, "median")


def test_trials_csv_has_a_latency_column_per_target_and_who_rejected(tmp_path: Path) -> None:
    record = TrialRecord.of({"arch_id": "a" * 64, "latency": {"median_ms": 1.0, "p90_ms": 1.1},
                             "targets": {"gpu": {"ms": 1.0, "over": False}, "edge": {"ms": 9.0, "over": True}}})
    row = trial_row(0, "PRUNED", record, Budget(2.0))
    assert row.over_budget and row.rejected_by == "edge" and row.target_ms == {"gpu": 1.0, "edge": 9.0}
    (tmp_path / "run.json").write_text(json.dumps({"study": "s", "targets": [
        {"name": "gpu", "budget_ms": 2.0}, {"name": "edge", "budget_ms": 5.0}]}))
    RunDirWriter(tmp_path, ("gpu", "edge")).write_trials([row])
    columns, _ = trials_csv(tmp_path)
    assert columns == [*TRIALS_CSV_COLUMNS, "latency_ms@gpu", "latency_ms@edge", "rejected_by"]
    loaded = RunDir.load(tmp_path)
    assert loaded.trials[0].target_ms == {"gpu": 1.0, "edge": 9.0} and loaded.trials[0].rejected_by == "edge"
    assert [t["name"] for t in loaded.targets] == ["gpu", "edge"]
    RunDirWriter(tmp_path).write_trials([trial_row(0, "COMPLETE", TrialRecord.of({"arch_id": "b" * 64}), Budget(2.0))])
    assert trials_csv(tmp_path)[0] == list(TRIALS_CSV_COLUMNS)   # without --target: the columns as before
