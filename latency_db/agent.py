"""A latency agent: on a target device, measure the jobs queued for its name (docs/agents.md).

``LatencyAgent.run`` registers the agent (its name, device, backend and the latency key's fields it times
under), then claims the name's jobs one at a time (latency_db/jobs.py) and measures each with
``measure_or_get``, the code path of a local measurement: the row is keyed by this machine's device key and
stored in the shared latency database, so it also answers later local searches on this device. A ``graph`` job
(a search's ``--baseline``) names an ONNX graph by the sha256 of its stored bytes: they are fetched and checked
as data (latency_db/graph_store.py) before this machine's backend builds them. A thread beats
the agent's heartbeat and renews the lease of the job in hand. Only outbound database connections are made.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from latency_db.graph_store import GraphError, graph_of_job
from latency_db.jobs import GRAPH, MEASURE, REFINE, Job, JobQueue
from latency_db.keys import device_template, latency_key
from latency_db.measure import LatencyResult, measure_or_get, refine, settle_all
from latency_db.workload import Workload
from search_spaces import ArchSpec, SpecError

if TYPE_CHECKING:
    from latency_db.backends import Backend
    from latency_db.candidates import Candidate
    from latency_db.store import LatencyStore


@dataclass
class AgentTally:
    """What one agent run did."""

    done: int = 0
    failed: int = 0
    lost: int = 0   # jobs measured after their lease had passed to another agent (the row is stored all the same)


class LatencyAgent:
    """One agent process serving ``name`` with ``backend`` on this machine."""

    def __init__(self, name: str, store: LatencyStore, backend: Backend, interval_s: float, lease_s: float,
                 say: Callable[[str], None]) -> None:
        self.name, self.store, self.backend, self.say = name, store, backend, say
        self.interval_s, self.lease_s = interval_s, lease_s
        self.queue = JobQueue(store)
        self.template = device_template(backend)
        self.agent_id: str | None = None
        self.current: int | None = None   # the job in hand, whose lease the heartbeat renews
        self.tally = AgentTally()

    def run(self, stop: threading.Event) -> AgentTally:
        """Register, then claim and measure jobs until ``stop`` is set (the job in hand is finished first);
        deregister on the way out."""
        self.agent_id = self.queue.register(self.name, self.template, self.backend.fingerprint(), self.lease_s)
        fp = self.backend.fingerprint()
        self.say(f"agent {self.agent_id[:8]} of '{self.name}': {self.backend.name} {fp['backend_version']} on "
                 f"{fp['device']}, protocol {self.backend.protocol.name}; waiting for jobs in {self.store.display_url}")
        beating = threading.Event()
        beater = threading.Thread(target=self._beat, args=(beating,), name="nas-agent-heartbeat", daemon=True)
        beater.start()
        try:
            poll_s = min(1.0, self.interval_s)
            while not stop.is_set():
                job = self.queue.claim(self.agent_id, self.name, self.backend.protocol.name)
                if job is None:
                    stop.wait(poll_s)
                    continue
                self.current = job.id
                try:
                    self._handle(job)
                finally:
                    self.current = None
        finally:
            beating.set()
            beater.join(timeout=self.interval_s + 5)
            self.queue.deregister(self.agent_id)
            self.say(f"agent {self.agent_id[:8]} stopped: {self.tally.done} done, {self.tally.failed} failed")
        return self.tally

    def _beat(self, done: threading.Event) -> None:
        """Beat every interval until ``done``, renewing the lease of the job in hand."""
        assert self.agent_id is not None
        while not done.wait(self.interval_s):
            try:
                self.queue.beat(self.agent_id, self.current)
            except SQLAlchemyError as exc:  # the database is away longer than the retries: the next beat tries again
                self.say(f"heartbeat failed ({type(exc).__name__}); trying again in {self.interval_s:g} s")

    def _handle(self, job: Job) -> None:
        """Measure one job (cache first) and mark it done or failed with its one-line reason."""
        assert self.agent_id is not None
        key_json, error, note = self._measure(job)
        if not self.queue.finish(job.id, self.agent_id, key_json, error):
            self.tally.lost += 1
            self.say(f"job {job.id}: its lease passed to another agent meanwhile; the row is stored all the same")
            return
        if error is None:
            self.tally.done += 1
        else:
            self.tally.failed += 1
        self.say(f"job {job.id} ({job.kind} {job.arch_id[:12]}): " + (f"done, {note}" if error is None
                                                                       else f"failed: {error}"))

    def _measure(self, job: Job) -> tuple[str | None, str | None, str]:
        """(the stored row's key as JSON or None, the failure's reason or None, what was measured). A REFINE job
        adds a visit to the row of a windowed protocol (a close call the search wants settled), as a local search's
        ``refine`` does."""
        if job.kind not in (MEASURE, REFINE, GRAPH):
            return None, f"unknown job kind {job.kind[:20]!r}", ""
        if job.kind == GRAPH:
            return self._measure_graph(job)
        try:
            spec = ArchSpec.from_json(job.spec_json)
        except SpecError as exc:
            return None, f"invalid spec: {exc}", ""
        if not spec.answers_to(job.arch_id):
            return None, f"invalid spec: it describes arch {spec.arch_id[:12]}, the job names {job.arch_id[:12]}", ""
        try:
            workload = Workload.from_dict(json.loads(job.workload_json))
            if job.kind == REFINE and self.backend.protocol.windows is not None:
                result = refine(spec, workload, self.backend, self.store)
            else:
                result = measure_or_get(spec, workload, self.backend, self.store)
        except (ValueError, KeyError, TypeError) as exc:  # a workload that is malformed or cannot feed the spec
            return None, f"invalid workload: {exc}", ""
        return self._answer(spec, workload, result)

    def _measure_graph(self, job: Job) -> tuple[str | None, str | None, str]:
        """A user's ONNX graph (``--baseline``), fetched by its hash and checked as data, built by this agent's
        backend and visited until its row settles, as a local baseline is (nas/baseline/run.py)."""
        try:
            workload = Workload.from_dict(json.loads(job.workload_json))
        except (ValueError, KeyError, TypeError) as exc:
            return None, f"invalid workload: {exc}", ""
        try:
            graph = graph_of_job(self.store, job.arch_id, job.spec_json, workload)
        except GraphError as exc:
            return None, f"invalid graph: {exc}", ""
        try:
            result = settle_all([(graph, workload)], self.backend, self.store)[0]
        except (ValueError, KeyError, TypeError) as exc:  # a workload the graph cannot take
            return None, f"invalid workload: {exc}", ""
        return self._answer(graph, workload, result)

    def _answer(self, candidate: Candidate, workload: Workload,
                result: LatencyResult) -> tuple[str | None, str | None, str]:
        """The job's answer from its measurement: the stored row's key (None when nothing was stored), the error."""
        key = latency_key(candidate, workload, self.backend)
        stored = self.store.get(key) is not None   # a failure that may not recur is not stored
        note = (f"{result.median_ms:.3f} ms median" + (f", {result.visits} visit(s)" if result.visits else "")
                + (" (from the database)" if result.cached else "")) if result.ok else ""
        return (key.to_json() if stored else None), result.error, note
