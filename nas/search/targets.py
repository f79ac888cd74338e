"""One search for several devices: ``--target NAME[=MS]`` (docs/agents.md).

Each target is a device with its budget: ``local`` is this machine's ``--backend``, measured here as without
``--target``; any other name is measured by that name's latency agents (``nas agent --name NAME``) through the
job queue in the shared latency database (latency_db/jobs.py), cache first by the agents' device keys. A
candidate is feasible only when it fits every target's budget; its Optuna constraint is the largest relative
miss, in the first target's milliseconds, so the budget-aware samplers read it as they read one budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nas.errors import NasError, UsageError
from nas.target import LOCAL_TARGET, Budget, Target, TargetBudget

if TYPE_CHECKING:
    from latency_db import LatencyResult, LatencyStore, Workload
    from latency_db.graph import OnnxGraph
    from latency_db.jobs import Agent, Job, JobQueue
    from nas.rundir import TrialRow
    from nas.search.latency_guard import LatencyGuard
    from nas.search.progress import Tally
    from nas.trial_record import TrialRecorder

POLL_S = 0.2                       # how often a waiting search looks at its jobs
CLOSE_CALL_ROUNDS = 3              # more visits of a close call at most (a cpu-*-v2 row settles by its third)
SAY_AFTER_S, SAY_EVERY_S = 2.0, 15.0


class TargetWaitError(NasError):
    """No agent of a target finished a job within the wait (exit 1: start or check the agents)."""


@dataclass
class Outcome:
    """One target's answer for one candidate: the latency (None when the job failed without a stored row)."""

    name: str
    budget: Budget
    result: LatencyResult | None
    error: str | None

    @property
    def value(self) -> float | None:
        """The statistic the budget applies to (None without a latency)."""
        return None if self.result is None else self.budget.value_of(self.result)

    ms = value  # the trial record's name for it (nas/trial_record.py TARGET_FIELDS)

    @property
    def median_ms(self) -> float | None:
        """The median (ms)."""
        return None if self.result is None else self.result.median_ms

    @property
    def p90_ms(self) -> float | None:
        """The p90 (ms)."""
        return None if self.result is None else self.result.p90_ms

    @property
    def cached(self) -> bool | None:
        """Answered from the latency database."""
        return None if self.result is None else self.result.cached

    @property
    def device(self) -> str | None:
        """The device that measured it."""
        return None if self.result is None else self.result.device

    @property
    def budget_ms(self) -> float:
        """This target's budget (ms)."""
        return self.budget.limit_ms

    @property
    def over(self) -> bool:
        """Measured, and over this target's budget."""
        return self.error is None and not self.budget.admits_ms(self.value)



class RemoteTarget:
    """The agents of one name: cache first by their device keys, else a job for whichever agent claims it."""

    def __init__(self, name: str, budget: Budget, queue: JobQueue, store: LatencyStore, workload: Workload) -> None:
        live = queue.live_agents(name)
        if not live:
            known = queue.list_agents(name)
            hint = (f"its {len(known)} registered agent(s) stopped or went silent" if known
                    else "none ever registered in this latency database")
            raise UsageError(f"--target {name}: no live agent of that name ({hint}); start "
                             f"`nas agent --name {name} --latency-db URL` on the device (`nas db agents` lists them)")
        self.name, self.budget, self.queue, self.store = name, budget, queue, store
        first = live[0]
        self.protocol = first.protocol
        self.agents = [a for a in live if a.protocol == first.protocol]
        self.workload = replace(workload, io_dtype=first.io_dtype)
        self.ignored = [a for a in live if a.protocol != first.protocol]

    def devices(self) -> list[str]:
        """The device names of the agents this search started with."""
        return sorted({a.device for a in self.agents})

    def describe(self) -> dict[str, Any]:
        """run.json's entry for this target."""
        first = self.agents[0]
        return {"name": self.name, "kind": "agents", "budget_ms": self.budget.limit_ms,
                "budget_stat": self.budget.stat, "devices": self.devices(), "backend": first.backend,
                "backend_version": first.backend_version, "protocol": self.protocol,
                "device_keys": _unique([a.key["device"] for a in self.agents]),
                "agents_at_start": len(self.agents), "workload": self.workload.to_dict()}

    def cached(self, spec: Any, workload: Workload | None = None) -> LatencyResult | None:
        """A row any of the agents' devices already holds for this candidate (at ``workload``, else the search's)."""
        from latency_db.keys import key_from_template
        from latency_db.measure import stored_result

        for agent in _unique_templates(self.agents):
            result = stored_result(self.store, key_from_template(agent.key, spec.arch_id, workload or self.workload),
                                   agent.device, cached=True)
            if result is not None:
                return result
        return None

    def submit(self, spec: Any, kind: str = "measure") -> int:
        """Queue the candidate's measurement (or, ``refine``, one more visit) for this name's agents; the job's id."""
        return self.queue.submit(self.name, self.protocol, spec.arch_id, spec.canonical_json(),
                                 self.workload.to_dict(), kind)

    def submit_graph(self, graph: OnnxGraph, workload: Workload) -> int:
        """Queue a user's graph (``--baseline``) for this name's agents: its bytes stored once by content, the job
        naming their hash (latency_db/graph_store.py); the job's id."""
        from latency_db.graph_store import graph_job_spec, put_graph
        from latency_db.jobs import GRAPH

        put_graph(self.store, graph.data)
        return self.queue.submit(self.name, self.protocol, graph.arch_id, graph_job_spec(graph), workload.to_dict(),
                                 GRAPH)

    def outcome(self, job: Job, waited_s: float) -> Outcome:
        """A finished job as this target's answer (its stored row, failures included, read back)."""
        from latency_db import LatencyKey
        from latency_db.measure import stored_result

        device = next((a.device for a in self.queue.list_agents(self.name) if a.agent_id == job.agent_id), "?")
        result = None
        if job.key_json is not None:
            result = stored_result(self.store, LatencyKey.from_json(job.key_json), device, cached=False,
                                   measure_s=waited_s)
        error = None if job.error is None and result is not None else (job.error or "no latency row was stored")
        return Outcome(self.name, self.budget, result, error)


def _unique(items: list[Any]) -> list[Any]:
    """The items without repeats, in order (dicts are not hashable)."""
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _unique_templates(agents: list[Agent]) -> list[Agent]:
    """One agent per distinct latency-key template (a farm of identical devices shares one)."""
    seen: list[dict[str, Any]] = []
    out = []
    for agent in agents:
        if agent.key not in seen:
            seen.append(agent.key)
            out.append(agent)
    return out


class TargetSet:
    """The search's targets, in the order given; the first one's budget is the study's (the samplers' scale)."""

    def __init__(self, target: Target, store: LatencyStore, guard: LatencyGuard, timeout_s: float,
                 say: Callable[[str], None]) -> None:
        from latency_db.jobs import JobQueue

        self.target, self.store, self.guard, self.timeout_s, self.say = target, store, guard, timeout_s, say
        queue = JobQueue(store)
        self.queue = queue
        self.order: list[TargetBudget] = list(target.targets)
        self.remote = {t.name: RemoteTarget(t.name, t.budget, queue, store, target.workload)
                       for t in self.order if t.name != LOCAL_TARGET}
        self.has_local = any(t.name == LOCAL_TARGET for t in self.order)
        self.waited_s = 0.0   # seconds this search spent waiting for agents (run.json's this_run.target_wait_s)

    @property
    def first_is_local(self) -> bool:
        """The first target (trials.csv's latency_ms, the winner's latency) is this machine: the search's final
        verification round can re-time it here."""
        return self.order[0].name == LOCAL_TARGET

    def notes(self) -> list[str]:
        """What the search says at its start: each target's devices."""
        out = []
        for t in self.order:
            if t.name == LOCAL_TARGET:
                out.append(f"target {t.name}: this machine ({self.target.device_name}), budget {t.budget.describe()}")
                continue
            r = self.remote[t.name]
            out.append(f"target {t.name}: {len(r.agents)} live agent(s) on {', '.join(r.devices())} "
                       f"({r.agents[0].backend}, {r.protocol}), budget {t.budget.describe()}")
            if r.ignored:
                out.append(f"target {t.name}: {len(r.ignored)} agent(s) time with another protocol than "
                           f"{r.protocol} and take none of this search's jobs")
        return out

    def describe(self) -> list[dict[str, Any]]:
        """run.json's ``targets``: each target's budget and devices."""
        out = []
        for t in self.order:
            if t.name == LOCAL_TARGET:
                out.append({"name": t.name, "kind": "local", "budget_ms": t.budget.limit_ms,
                            "budget_stat": t.budget.stat, "devices": [self.target.device_name],
                            "backend": self.target.backend.name, "protocol": self.target.backend.protocol.name,
                            "workload": self.target.workload.to_dict()})
            else:
                out.append(self.remote[t.name].describe())
        return out

    # ------------------------------------------------------------------ measuring
    def measure(self, spec: Any, number: int, tally: Tally) -> dict[str, Outcome]:
        """Every target's latency of ``spec``: remote jobs are queued first, so the agents time while this
        machine times the local target; then the search waits for them (bounded)."""
        from latency_db import measure_or_get

        outcomes: dict[str, Outcome] = {}
        pending: dict[int, RemoteTarget] = {}
        for name, remote in self.remote.items():
            hit = remote.cached(spec)
            if hit is not None:
                outcomes[name] = Outcome(name, remote.budget, hit, hit.error)
            else:
                pending[remote.submit(spec)] = remote
        if self.has_local:
            budget = next(t.budget for t in self.order if t.name == LOCAL_TARGET)
            t = self.target
            local = measure_or_get(spec, t.workload, t.backend, self.store, details=self.guard.details())
            local = self.guard.after_measure(spec, local, None)
            outcomes[LOCAL_TARGET] = Outcome(LOCAL_TARGET, budget, local, local.error)
        outcomes.update(self.wait(pending, f"trial {number}"))
        tally.close_calls += self.settle_close_calls(spec, number, outcomes)
        return {t.name: outcomes[t.name] for t in self.order}

    def measure_graph(self, graph: OnnxGraph, workload: Workload) -> dict[str, Outcome]:
        """Every target's latency of a user's graph (``--baseline``) at ``workload``, cache first: a graph job for
        each remote target (the agents settle its row), the local target settled here meanwhile."""
        from latency_db.measure import settle_all

        outcomes: dict[str, Outcome] = {}
        pending: dict[int, RemoteTarget] = {}
        for name, remote in self.remote.items():
            hit = remote.cached(graph, workload)
            if hit is not None and (hit.settled or not hit.ok):
                outcomes[name] = Outcome(name, remote.budget, hit, hit.error)
            else:
                pending[remote.submit_graph(graph, workload)] = remote
        for t in self.order:
            if t.name == LOCAL_TARGET:
                local = settle_all([(graph, workload)], self.target.backend, self.store)[0]
                outcomes[LOCAL_TARGET] = Outcome(LOCAL_TARGET, t.budget, local, local.error)
        outcomes.update(self.wait(pending, f"baseline {graph.name}"))
        return {t.name: outcomes[t.name] for t in self.order}

    def settle_close_calls(self, spec: Any, number: int, outcomes: dict[str, Outcome]) -> int:
        """Visit again, on its own device, each first estimate within the noise band of its target's budget
        until its row is settled or out of the band, as a search without targets does (nas/search/verification.py);
        the agents' visits are queued together, so the devices work at once. Returns how many targets re-timed."""
        from latency_db.jobs import REFINE
        from nas.search.verification import settle_close_call

        def close(o: Outcome) -> bool:
            r = o.result
            return (r is not None and r.ok and not r.settled and r.visits > 0
                    and o.budget.close_call(o.value, r.in_spell))

        retimed: set[str] = set()
        local = outcomes.get(LOCAL_TARGET)
        for round_ in range(CLOSE_CALL_ROUNDS):
            pending = {self.remote[name].submit(spec, REFINE): self.remote[name]
                       for name, o in outcomes.items() if name != LOCAL_TARGET and close(o)}
            if round_ == 0 and local is not None and close(local):  # while the agents visit theirs
                retimed.add(LOCAL_TARGET)
                aimed = replace(self.target, budget=local.budget)
                result = settle_close_call(aimed, self.store, spec, local.result, self.guard.details())
                outcomes[LOCAL_TARGET] = Outcome(LOCAL_TARGET, local.budget, result, result.error)
            if not pending:
                break
            retimed.update(r.name for r in pending.values())
            outcomes.update(self.wait(pending, f"trial {number}"))
        return len(retimed)

    def wait(self, pending: dict[int, RemoteTarget], what: str) -> dict[str, Outcome]:
        """The outcomes of these jobs, waiting at most ``timeout_s`` and saying what for when it takes a while."""
        started = time.monotonic()
        next_say = started + SAY_AFTER_S
        done: dict[str, Outcome] = {}
        while pending:
            states = self.queue.states(list(pending))
            for job_id, job in states.items():
                if job.finished:
                    remote = pending.pop(job_id)
                    done[remote.name] = remote.outcome(job, time.monotonic() - started)
            if not pending:
                break
            now = time.monotonic()
            if now - started > self.timeout_s:
                raise TargetWaitError(f"{what}: no agent finished {self._waiting_for(pending, states)} within "
                                      f"--target-timeout {self.timeout_s:g} s; check the agents (`nas db agents`)")
            if now >= next_say:
                self.say(f"{what}: waiting {now - started:.0f} s for {self._waiting_for(pending, states)}")
                next_say = now + SAY_EVERY_S
            time.sleep(POLL_S)
        self.waited_s += time.monotonic() - started
        return done

    def _waiting_for(self, pending: dict[int, RemoteTarget], states: dict[int, Job]) -> str:
        """'job 7 of cpu1 (running on agent 1a2b3c4d, attempt 2; 1 live agent)', for each pending job."""
        parts = []
        for job_id, remote in pending.items():
            job = states.get(job_id)
            live = len(self.queue.live_agents(remote.name))
            where = "" if job is None or job.agent_id is None else f" on agent {job.agent_id[:8]}"
            state = "?" if job is None else f"{job.state}{where}, attempt {max(job.attempts, 1)}"
            parts.append(f"job {job_id} of '{remote.name}' ({state}; {live} live agent(s))")
        return ", ".join(parts)

    # ------------------------------------------------------------------ the gate
    def gate(self, spec: Any, study: Any, trial: Any, record: TrialRecorder, writer: Any,
             tally: Tally) -> float | None:
        """Measure on every target and decide: the first target's latency when all fit, else None (the trial
        is told FAIL when a target could not measure it, PRUNED when one or more targets rejected it)."""
        from optuna.trial import TrialState

        outcomes = self.measure(spec, trial.number, tally)
        first = outcomes[self.order[0].name]
        for o in outcomes.values():
            if o.result is not None:
                tally.latency_hits += int(o.result.cached)
                tally.measure_s += 0.0 if o.result.cached else o.result.measure_s - o.result.lock_wait_s
                tally.lock_wait_s += o.result.lock_wait_s
        if first.result is not None:
            writer.write_latency(spec.arch_id, first.result.to_dict())
            record.measured(first.result)
        record.targets(outcomes)
        failed = [o for o in outcomes.values() if o.error is not None]
        if failed:
            record.failed("; ".join(f"measurement failed on {o.name}: {o.error}" for o in failed))
            study.tell(trial, state=TrialState.FAIL)
            return None
        misses = [o.value / o.budget.limit_ms - 1 for o in outcomes.values() if o.value is not None]
        trial.set_constraint("latency_ms", max(misses, default=0.0) * first.budget.limit_ms)
        rejected = [o.name for o in outcomes.values() if o.over]
        if rejected:
            study.tell(trial, state=TrialState.PRUNED)
            return None
        return first.value

    def no_feasible_message(self, rows: list[TrialRow]) -> str:
        """Why nothing fits: how many trials each target rejected, and the fastest each one measured."""
        parts = []
        for t in self.order:
            rejected = sum(1 for r in rows if t.name in r.rejected_by.split(";"))
            values = [v for r in rows if (v := r.target_ms.get(t.name)) is not None]
            fastest = f", fastest {min(values):.3f} ms" if values else ""
            parts.append(f"{t.name} ({t.budget.describe()}) rejected {rejected}{fastest}")
        return f"no architecture fits every target's budget: {'; '.join(parts)}"
