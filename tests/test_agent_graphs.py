"""A user's ONNX graph (``--baseline``) measured by latency agents (issue #27 item 2): the job carries the graph by
its content hash, the agent checks the stored bytes as data and times them under its own device key.

Real agent processes (``--threads 1``, another device key than this machine's) on SQLite and PostgreSQL, with
the fixtures of tests/test_agents.py; no test asserts a wall-clock time.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from baseline_nets import write_nets
from test_agents import (  # noqa: F401  (agents, db_url, env: fixtures this module's tests take)
    ONE_TRIAL,
    SEARCH,
    WORKLOAD,
    Agents,
    agents,
    db_url,
    env,
    threads_of,
    wait_until,
)
from tiny import run_nas

from latency_db import LatencyStore
from latency_db.graph_store import fetch_graph, put_graph
from latency_db.jobs import DONE, FAILED, GRAPH
from latency_db.keys import GRAPH_ID_PREFIX, graph_id
from latency_db.schema import graphs


@pytest.mark.slow
def test_a_search_with_a_target_and_a_baseline_times_the_graph_on_the_agent(agents: Agents,  # noqa: F811
                                                                            tmp_path: Path) -> None:
    queue, store = agents.queue, LatencyStore(agents.url)
    a, a_id = agents.start("cpu1")
    net = write_nets(tmp_path)["rgb"]
    run_dir = tmp_path / "run"
    proc = run_nas(*SEARCH, *ONE_TRIAL, "--target", "cpu1=1000", "--baseline", f"mine={net}", "--latency-db",
                   agents.url, "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    data = net.read_bytes()
    graph_jobs = [j for j in queue.jobs_of("cpu1") if j.kind == GRAPH]
    assert len(graph_jobs) == 1
    job = graph_jobs[0]
    assert job.state == DONE and job.agent_id == a_id and job.arch_id == graph_id(data)
    assert json.loads(job.spec_json)["onnx_sha256"] == hashlib.sha256(data).hexdigest()   # the hash, not the bytes
    assert fetch_graph(store, job.arch_id[len(GRAPH_ID_PREFIX):]) == data                 # stored once, by content
    assert threads_of(store, job.key_json) == 1                    # the row is keyed by the agent's device
    assert store.count() == len(queue.jobs_of("cpu1"))             # nothing was timed on this machine
    mine = json.loads((run_dir / "run.json").read_text())["baselines"][0]
    assert mine["latency_ms@cpu1"] is not None and mine["latency_ms@cpu1"] == mine["latency_ms"]
    assert mine["targets"]["cpu1"]["error"] is None and "1 threads" in mine["targets"]["cpu1"]["device"]
    assert "on cpu1 (ms)" in (run_dir / "report.html").read_text()   # the report's table: one column per target
    assert re.search(r"baseline mine: [0-9.]+ ms on cpu1, as given", proc.stderr), proc.stderr   # said per target
    assert agents.stop(a) == 0


def test_a_graph_job_whose_bytes_do_not_match_their_hash_or_are_not_onnx_fails_with_one_line(
        agents: Agents) -> None:  # noqa: F811
    queue, store = agents.queue, LatencyStore(agents.url)
    a, _ = agents.start("cpu1")
    protocol = queue.live_agents("cpu1")[0].protocol
    garbage = b"not an onnx graph\n\x00\x01"
    put_graph(store, garbage)                         # stored honestly, but not a graph
    honest = hashlib.sha256(b"the bytes the search meant").hexdigest()
    with store.engine.begin() as conn:                # stored under a hash the bytes do not have
        conn.execute(graphs.insert().values(sha256=honest, data=b"tampered", size=8, stored_at="now"))
    missing = hashlib.sha256(b"never stored").hexdigest()

    def job(sha: str) -> int:
        spec = json.dumps({"onnx_sha256": sha, "name": "mine"})
        return queue.submit("cpu1", protocol, GRAPH_ID_PREFIX + sha, spec, WORKLOAD, GRAPH)

    ids = [job(hashlib.sha256(garbage).hexdigest()), job(honest), job(missing)]
    wait_until(lambda: all(j.finished for j in queue.states(ids).values()), "the agent to finish the graph jobs")
    errors = [queue.states(ids)[i].error or "" for i in ids]
    assert all(queue.states(ids)[i].state == FAILED for i in ids)
    assert all("\n" not in e and e.startswith("invalid graph: ") for e in errors), errors
    assert "not a valid ONNX model" in errors[0]
    assert "do not match their sha256" in errors[1]
    assert "no graph with sha256" in errors[2]
    assert store.count() == 0                                  # nothing was built, nothing stored
    assert agents.stop(a) == 0
