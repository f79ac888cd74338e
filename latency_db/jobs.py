"""The measurement queue in the latency database: latency agents and their jobs (docs/agents.md).

The one owner of the ``nas_agents`` and ``nas_jobs`` tables (latency_db/schema.py). A search submits a job (a
validated spec's JSON, the workload and the timing protocol) for an agent name; an agent of that name claims it
with a lease, measures it where it runs and marks it done with the latency row's key, or failed with a one-line
reason. A claim is one transaction: on PostgreSQL the job row is locked with ``SELECT ... FOR UPDATE SKIP
LOCKED`` (concurrent agents skip each other's rows instead of waiting, so a job goes to exactly one), on SQLite
the transaction is ``BEGIN IMMEDIATE`` (one writer at a time on one machine). A running job whose lease has
expired (its agent was killed) is claimed again by the next agent, at most ``MAX_ATTEMPTS`` times. Every time
is the database server's clock (``db_now``), so agents and searches on machines whose clocks differ agree.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text

from latency_db.retry import retry_transient
from latency_db.schema import agents, jobs

if TYPE_CHECKING:
    from latency_db.store import LatencyStore

MAX_ATTEMPTS = 3            # claims of one job before it is failed (its agents died measuring it each time)
HEARTBEAT_ENV = "NAS_AGENT_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S, DEFAULT_LEASE_S = 5.0, 30.0
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
MEASURE, REFINE = "measure", "refine"   # job kinds: the row cache first; one more visit of a close call's row
GRAPH = "graph"   # a user's ONNX graph, named by the sha256 of its stored bytes (latency_db/graph_store.py)


def agent_timing() -> tuple[float, float]:
    """(heartbeat interval, lease) in seconds: ``$NAS_AGENT_HEARTBEAT_S`` as ``INTERVAL`` or ``INTERVAL,LEASE``
    (default 5,30); the lease is at least twice the interval, so one late beat never loses a job."""
    from search_spaces.errors import UsageError

    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return DEFAULT_HEARTBEAT_S, DEFAULT_LEASE_S
    try:
        parts = [float(p) for p in raw.split(",")]
    except ValueError:
        raise UsageError(f"{HEARTBEAT_ENV} must be INTERVAL or INTERVAL,LEASE in seconds, got {raw!r}") from None
    if len(parts) > 2 or not all(0 < p < 3600 for p in parts):
        raise UsageError(f"{HEARTBEAT_ENV} must be INTERVAL or INTERVAL,LEASE in seconds, got {raw!r}")
    interval = parts[0]
    lease = parts[1] if len(parts) == 2 else max(DEFAULT_LEASE_S, 6 * interval)
    return interval, max(lease, 2 * interval)


def one_line(message: str, limit: int = 500) -> str:
    """A reason as one line (a library's message may hold newlines), cut at ``limit`` characters."""
    return " ".join(message.split())[:limit]


@dataclass(frozen=True)
class Agent:
    """One registered agent, as the table holds it."""

    agent_id: str
    name: str
    host: str | None
    pid: int | None
    device: str
    key: dict[str, Any]       # the latency key's fields but arch and workload (latency_db.keys.device_template)
    backend: str
    backend_version: str
    protocol: str
    io_dtype: str
    lease_s: float
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    jobs_done: int
    jobs_failed: int

    @classmethod
    def of(cls, row: Any) -> Agent:
        return cls(agent_id=row["agent_id"], name=row["name"], host=row["host"], pid=row["pid"], device=row["device"],
                   key=json.loads(row["key_json"]), backend=row["backend"], backend_version=row["backend_version"],
                   protocol=row["protocol"], io_dtype=row["io_dtype"], lease_s=float(row["lease_s"]),
                   started_at=float(row["started_at"]), heartbeat_at=float(row["heartbeat_at"]),
                   stopped_at=None if row["stopped_at"] is None else float(row["stopped_at"]),
                   jobs_done=int(row["jobs_done"]), jobs_failed=int(row["jobs_failed"]))

    def live(self, now: float) -> bool:
        """Not deregistered, and beat within its lease."""
        return self.stopped_at is None and now - self.heartbeat_at <= self.lease_s


@dataclass(frozen=True)
class Job:
    """One measurement job, as the table holds it."""

    id: int
    target: str
    protocol: str
    kind: str
    arch_id: str
    spec_json: str
    workload_json: str
    state: str
    agent_id: str | None
    attempts: int
    created_at: float
    expires_at: float | None
    key_json: str | None
    error: str | None

    @classmethod
    def of(cls, row: Any) -> Job:
        return cls(id=int(row["id"]), target=row["target"], protocol=row["protocol"], kind=row["kind"],
                   arch_id=row["arch_id"],
                   spec_json=row["spec_json"], workload_json=row["workload_json"], state=row["state"],
                   agent_id=row["agent_id"], attempts=int(row["attempts"]), created_at=float(row["created_at"]),
                   expires_at=None if row["expires_at"] is None else float(row["expires_at"]),
                   key_json=row["key_json"], error=row["error"])

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)


def db_now(conn: Any) -> float:
    """Seconds since the epoch on the database server's clock."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT extract(epoch from clock_timestamp())")).scalar_one())
    return float(conn.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar_one())


class JobQueue:
    """The agents and jobs of one latency database (the store's engine: one pool per process)."""

    def __init__(self, store: LatencyStore) -> None:
        self.engine = store.engine   # SQLite: driver-level autocommit, so that ``write`` can BEGIN IMMEDIATE itself
        self.dialect = store.dialect

    @contextmanager
    def write(self) -> Iterator[Any]:
        """One write transaction: BEGIN IMMEDIATE on SQLite (writers queue at its start, never deadlock
        mid-way), an ordinary transaction on PostgreSQL."""
        with self.engine.connect() as conn:
            if self.dialect != "sqlite":
                with conn.begin():
                    yield conn
                return
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")

    @retry_transient
    def now(self) -> float:
        with self.engine.connect() as conn:
            return db_now(conn)

    # ------------------------------------------------------------------ agents
    @retry_transient
    def register(self, name: str, key: dict[str, Any], fingerprint: dict[str, Any], lease_s: float) -> str:
        """Add an agent of ``name`` timing under ``key`` (``keys.device_template``); returns its id."""
        agent_id = str(uuid.uuid4())
        with self.write() as conn:
            now = db_now(conn)
            conn.execute(agents.insert().values(
                agent_id=agent_id, name=name, host=socket.gethostname(), pid=os.getpid(),
                device=str(fingerprint.get("device", "")), key_json=json.dumps(key, sort_keys=True),
                fingerprint_json=json.dumps(fingerprint, sort_keys=True, default=str), backend=key["backend"],
                backend_version=key["backend_version"], protocol=key["protocol"], io_dtype=key["io_dtype"],
                lease_s=lease_s, started_at=now, heartbeat_at=now, stopped_at=None, jobs_done=0, jobs_failed=0))
        return agent_id

    @retry_transient
    def beat(self, agent_id: str, job_id: int | None) -> None:
        """The agent is alive; the lease of the job it is measuring is renewed."""
        with self.write() as conn:
            now = db_now(conn)
            lease = conn.execute(select(agents.c.lease_s).where(agents.c.agent_id == agent_id)).scalar_one()
            conn.execute(agents.update().where(agents.c.agent_id == agent_id).values(heartbeat_at=now))
            if job_id is not None:
                conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.agent_id == agent_id,
                                                 jobs.c.state == RUNNING).values(expires_at=now + lease))

    @retry_transient
    def deregister(self, agent_id: str) -> None:
        with self.write() as conn:
            conn.execute(agents.update().where(agents.c.agent_id == agent_id).values(stopped_at=db_now(conn)))

    @retry_transient
    def list_agents(self, name: str | None = None) -> list[Agent]:
        """Every agent ever registered (of ``name``), oldest first."""
        q = select(agents).order_by(agents.c.started_at)
        if name is not None:
            q = q.where(agents.c.name == name)
        with self.engine.connect() as conn:
            return [Agent.of(r) for r in conn.execute(q).mappings()]

    def live_agents(self, name: str) -> list[Agent]:
        """The agents of ``name`` that beat within their lease and have not deregistered."""
        now = self.now()
        return [a for a in self.list_agents(name) if a.live(now)]

    # ------------------------------------------------------------------ jobs
    @retry_transient
    def submit(self, target: str, protocol: str, arch_id: str, spec_json: str, workload: dict[str, Any],
               kind: str = MEASURE) -> int:
        """Queue one measurement (``kind`` MEASURE, REFINE, or GRAPH with a graph job's spec) for the agents of
        ``target``; returns the job's id."""
        requested_by = f"{socket.gethostname()}:{os.getpid()}"
        with self.write() as conn:
            result = conn.execute(jobs.insert().values(
                target=target, protocol=protocol, kind=kind, arch_id=arch_id, spec_json=spec_json,
                workload_json=json.dumps(workload, sort_keys=True), state=PENDING, agent_id=None, attempts=0,
                created_at=db_now(conn), requested_by=requested_by[:255]))
            return int(result.inserted_primary_key[0])

    @retry_transient
    def claim(self, agent_id: str, name: str, protocol: str) -> Job | None:
        """The oldest job of ``name`` timed with ``protocol`` that is pending or whose lease expired, now this
        agent's (leased for the agent's lease); None when there is none."""
        with self.write() as conn:
            now = db_now(conn)
            lease = conn.execute(select(agents.c.lease_s).where(agents.c.agent_id == agent_id)).scalar_one()
            self._fail_exhausted(conn, now)
            claimable = (jobs.c.state == PENDING) | ((jobs.c.state == RUNNING) & (jobs.c.expires_at < now))
            query = (select(jobs.c.id).where(jobs.c.target == name, jobs.c.protocol == protocol, claimable,
                                             jobs.c.attempts < MAX_ATTEMPTS)
                     .order_by(jobs.c.id).limit(1).with_for_update(skip_locked=True))
            job_id = conn.execute(query).scalar()
            if job_id is None:
                return None
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                state=RUNNING, agent_id=agent_id, attempts=jobs.c.attempts + 1, claimed_at=now,
                expires_at=now + lease))
            return Job.of(conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one())

    @retry_transient
    def finish(self, job_id: int, agent_id: str, key_json: str | None, error: str | None) -> bool:
        """Mark the agent's job done (``error`` None) or failed; False when the job is no longer the agent's
        (its lease expired and another agent claimed it), which then leaves it alone."""
        with self.write() as conn:
            changed = conn.execute(jobs.update().where(
                jobs.c.id == job_id, jobs.c.agent_id == agent_id, jobs.c.state == RUNNING).values(
                state=DONE if error is None else FAILED, finished_at=db_now(conn), key_json=key_json,
                error=None if error is None else one_line(error))).rowcount
            if changed:
                column = agents.c.jobs_done if error is None else agents.c.jobs_failed
                conn.execute(agents.update().where(agents.c.agent_id == agent_id).values({column: column + 1}))
            return bool(changed)

    @retry_transient
    def states(self, job_ids: list[int]) -> dict[int, Job]:
        """The current state of these jobs; a running job whose lease expired for the last time is failed first."""
        if not job_ids:
            return {}
        with self.write() as conn:
            self._fail_exhausted(conn, db_now(conn))
            rows = conn.execute(select(jobs).where(jobs.c.id.in_(job_ids))).mappings()
            return {int(r["id"]): Job.of(r) for r in rows}

    def _fail_exhausted(self, conn: Any, now: float) -> None:
        """Fail the running jobs whose lease expired after their last allowed claim."""
        conn.execute(jobs.update().where(jobs.c.state == RUNNING, jobs.c.expires_at < now,
                                         jobs.c.attempts >= MAX_ATTEMPTS).values(
            state=FAILED, finished_at=now,
            error=f"the lease expired {MAX_ATTEMPTS} times: each agent that claimed the job stopped beating"))

    @retry_transient
    def jobs_of(self, target: str) -> list[Job]:
        """Every job of ``target``, oldest first (tests and benchmarks read the queue's history)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.target == target).order_by(jobs.c.id)).mappings()
            return [Job.of(r) for r in rows]
