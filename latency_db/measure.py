"""Cache-first measurement: ``measure_or_get(spec, workload, backend, store)``.

A cache hit answers from the store and never touches the backend. A miss takes the device lock,
looks again (another process may have measured meanwhile), measures, stores and returns. A
candidate that cannot be built is stored with its error text and returned with ``error`` set;
an unexpected failure is returned the same way but not stored, so it is retried next time.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, fields
from typing import Any

from latency_db.backends import Backend, BuildError
from latency_db.candidates import Candidate, check_workload, counts_for
from latency_db.contention import CONTENDED_CPUS, others_cpus, snapshot
from latency_db.fingerprint import host
from latency_db.keys import LatencyKey, latency_key
from latency_db.lock import device_lock
from latency_db.roofline import device_peak, raise_to_measured, roofline_ms
from latency_db.spells import last_chance
from latency_db.stats import summarize
from latency_db.store import LatencyStore, now_iso, open_store
from latency_db.windows import Visit, WindowPlan, estimate_ms, in_spell, settled, spread
from latency_db.workload import Workload
from search_spaces import ArchSpec


@dataclass(frozen=True)
class LatencyResult:
    """One candidate's latency on one device; milliseconds throughout. Numbers are None on error."""

    arch_id: str
    median_ms: float | None
    p10_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    cov: float | None
    n_samples: int
    samples_ms: tuple[float, ...]
    unstable: bool
    build_s: float | None
    measure_s: float        # wall seconds this call took (lock wait included)
    lock_wait_s: float      # of which waiting for the device lock
    roofline_ms: float | None
    cached: bool
    error: str | None
    background_cpus: float | None  # CPU backends: other processes' CPU use while this was timed (else None)
    visits: int                    # windowed protocols: visits in the row (0 for others)
    settled: bool                  # needs no more visits (always True for unwindowed protocols)
    first_ms: float | None         # windowed protocols: the first visit's estimate (what a one-visit gate saw)
    quiet_waited_s: float          # windowed protocols: seconds the row's visits waited for other processes to pause
    spell_waited_s: float          # v3 protocols: seconds the row's visits waited for a slow spell to end
    in_spell: bool                 # v3 protocols: every visit of the row was timed inside a slow spell
    backend: str
    backend_version: str
    device: str
    protocol: str
    host: str | None
    measured_at: str

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def contended(self) -> bool:
        """Measured just now on a CPU while other processes were busy: likely too slow, yet stored."""
        return not self.cached and (self.background_cpus or 0.0) > CONTENDED_CPUS

    def to_dict(self) -> dict[str, Any]:
        # every field is a scalar but the samples: a shallow copy (asdict deep-copies each of thousands of samples,
        # which took 6 s of a cached 8-search bench)
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["samples_ms"] = list(self.samples_ms)
        return d


_DEFAULT_STORE: list[LatencyStore] = []


def _default_store() -> LatencyStore:
    if not _DEFAULT_STORE:
        _DEFAULT_STORE.append(open_store())
    return _DEFAULT_STORE[0]


def _result(row: dict[str, Any], device: str, cached: bool, measure_s: float, lock_wait_s: float) -> LatencyResult:
    details = json.loads(row.get("details_json") or "{}")  # parsed once: a row's visits make it long
    visits = [Visit.from_dict(v) for v in details.get("visits", [])]
    return LatencyResult(
        visits=len(visits), settled=is_settled(row), first_ms=visits[0].estimate_ms if visits else None,
        quiet_waited_s=sum(v.waited_s for v in visits), spell_waited_s=sum(v.spell_waited_s for v in visits),
        in_spell=bool(details.get("in_spell")),
        arch_id=row["arch_id"], median_ms=row["median_ms"], p10_ms=row["p10_ms"], p90_ms=row["p90_ms"],
        p99_ms=row["p99_ms"], mean_ms=row["mean_ms"], cov=row["cov"], n_samples=row["n_samples"],
        samples_ms=tuple(json.loads(row["samples_json"])), unstable=bool(row["unstable"]), build_s=row["build_s"],
        measure_s=measure_s, lock_wait_s=lock_wait_s, roofline_ms=row["roofline_ms"], cached=cached,
        error=row["error"], background_cpus=details.get("background_cpus"),
        backend=row["backend"], backend_version=row["backend_version"], device=device,
        protocol=row["protocol"], host=row["host"], measured_at=row["measured_at"],
    )


def measure_row(spec: Candidate, workload: Workload, backend: Backend, store: LatencyStore,
                extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
    """Measure and build the row to store (``extra`` joins its details); the flag says whether it may be cached."""
    fp = backend.fingerprint()
    # the roofline probe is a float conv: an int8 graph may beat it, which must not raise the float peak
    peak = None if backend.quantized else device_peak(backend, store)
    counts = counts_for(spec, workload)
    row: dict[str, Any] = {
        "summary": spec.summary(), "device": fp["device"], "host": host(), "measured_at": now_iso(),
        "fingerprint_json": json.dumps(fp, sort_keys=True, default=str),
        "roofline_ms": roofline_ms(counts, peak) if peak else None,
        "error": None, "median_ms": None, "p10_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None,
        "cov": None, "n_samples": 0, "samples_json": "[]", "unstable": False, "attempts": 0, "build_s": None,
        "details_json": "{}",
    }
    before = snapshot()
    try:
        raw = backend.measure(spec, workload)
    except BuildError as exc:
        return {**row, "status": "error", "error": str(exc)}, True
    except Exception as exc:  # noqa: BLE001  a failure that may not recur (out of memory, driver hiccup): not cached
        return {**row, "status": "error", "error": f"{type(exc).__name__}: {exc}"}, False
    s = summarize(list(raw.samples_ms))
    if peak is not None:  # a CPU probe proved low by this measurement is raised, so the bound stays a bound
        row["roofline_ms"] = roofline_ms(counts, raise_to_measured(backend, store, peak, counts, raw.latency_ms))
    others = None if backend.is_gpu else others_cpus(before, snapshot())  # a GPU is not slowed by busy CPUs
    details = {**raw.details, **(extra or {}), "background_cpus": None if others is None else round(others, 3)}
    if raw.visits and backend.protocol.windows is not None:
        details.update(visits_details(raw.visits, backend.protocol.windows))
    row.update(status="ok", median_ms=raw.latency_ms, p10_ms=s.p10_ms, p90_ms=s.p90_ms, p99_ms=s.p99_ms,
               mean_ms=s.mean_ms, cov=s.cov, n_samples=s.n_samples, samples_json=json.dumps(list(raw.samples_ms)),
               unstable=raw.unstable, attempts=raw.attempts, build_s=raw.build_s,
               details_json=json.dumps(details, sort_keys=True, default=str))
    return row, True


def measure_or_get(spec: Candidate, workload: Workload, backend: Backend,
                   store: LatencyStore | None = None, details: dict[str, Any] | None = None) -> LatencyResult:
    """The latency of ``spec`` under ``workload`` on ``backend``'s device: from the store when known,
    else measured under the device lock and stored (``details``, e.g. the drift canary's ratio, are
    stored with a new measurement). Never raises for a candidate that fails to build or run: the
    result's ``error`` says why. Raises ValueError when the workload cannot feed the spec."""
    t0 = time.perf_counter()
    check_workload(spec, workload)
    store = store if store is not None else _default_store()
    key: LatencyKey = latency_key(spec, workload, backend)
    device = backend.fingerprint()["device"]
    row = store.get(key)
    if row is not None:
        return _result(row, device, True, time.perf_counter() - t0, 0.0)
    with device_lock(backend) as lock:
        row = store.get(key)
        if row is not None:
            return _result(row, device, True, time.perf_counter() - t0, lock.waited_s)
        row, cacheable = measure_row(spec, workload, backend, store, details)
    if cacheable:
        store.put(key, row)
        if isinstance(spec, ArchSpec):  # the predictor fits on the architecture, not only its id
            store.put_spec(spec.arch_id, spec.canonical_json())
        row = store.get(key) or row  # another process may have won the insert: report the stored row
    w = key.workload
    full = {**row, "arch_id": key.arch_id, "backend": key.backend, "backend_version": key.backend_version,
            "protocol": key.protocol, "height": w.height, "width": w.width}
    return _result(full, device, False, time.perf_counter() - t0, lock.waited_s)


def measure_again(spec: Candidate, workload: Workload, backend: Backend, store: LatencyStore,
                  details: dict[str, Any] | None = None) -> LatencyResult:
    """Time ``spec`` once more (a measurement that disagrees with a prediction). Windowed protocols add a
    visit to the row (``refine``); others keep the steadier (lower CoV) of the stored row and the new one,
    the kept row's details naming the other median."""
    if backend.protocol.windows is not None:
        return refine(spec, workload, backend, store, details, force=True)
    t0 = time.perf_counter()
    key = latency_key(spec, workload, backend)
    device = backend.fingerprint()["device"]
    with device_lock(backend) as lock:
        old = store.get(key)
        row, _cacheable = measure_row(spec, workload, backend, store, details)
    if old is None:
        store.put(key, row)
    elif row["status"] == "ok" and old["status"] == "ok":
        new_steadier = old["cov"] is None or row["cov"] < old["cov"]
        kept, other = (row, old) if new_steadier else (old, row)
        kept_details = {**json.loads(kept["details_json"] or "{}"), "remeasured": True,
                        "other_median_ms": other["median_ms"]}
        store.replace(key.digest, {**kept, "details_json": json.dumps(kept_details, sort_keys=True, default=str)})
    final = store.get(key) or row
    w = key.workload
    full = {**final, "arch_id": key.arch_id, "backend": key.backend, "backend_version": key.backend_version,
            "protocol": key.protocol, "height": w.height, "width": w.width}
    return _result(full, device, False, time.perf_counter() - t0, lock.waited_s)


# ---------------------------------------------------------------------- windowed protocols: visits
def visits_details(visits: tuple[Visit, ...] | list[Visit], plan: WindowPlan) -> dict[str, Any]:
    """What a row's details keep of its visits: every window median, whether the row is settled, the spread, and
    (v3) whether every visit was timed inside a slow spell."""
    return {"visits": [v.to_dict() for v in visits], "settled": settled(visits, plan),
            "visit_spread": round(spread(visits), 4), "in_spell": all(in_spell(visits, plan.spell_tol))}


def visits_of(row: dict[str, Any]) -> list[Visit]:
    """The visits a stored row holds (none for rows of unwindowed protocols)."""
    return [Visit.from_dict(v) for v in json.loads(row.get("details_json") or "{}").get("visits", [])]


def is_settled(row: dict[str, Any]) -> bool:
    """A row needs no more visits: settled, an error, or a protocol without visits."""
    if row["status"] != "ok":
        return True
    details = json.loads(row.get("details_json") or "{}")
    return "visits" not in details or bool(details.get("settled"))


def _merged(old: dict[str, Any], new: dict[str, Any], plan: WindowPlan) -> dict[str, Any]:
    """The stored row with the new visit's windows and samples added; its latency re-estimated over all visits."""
    visits = visits_of(old) + visits_of(new)
    samples = json.loads(old["samples_json"]) + json.loads(new["samples_json"])
    s = summarize(samples)
    old_details, new_details = json.loads(old["details_json"] or "{}"), json.loads(new["details_json"] or "{}")
    details = {**old_details, **new_details, **visits_details(visits, plan)}  # the newest visit's notes win
    others = [d for d in (old_details.get("background_cpus"), new_details.get("background_cpus")) if d is not None]
    details["background_cpus"] = max(others) if others else None
    return {**old, "median_ms": estimate_ms(visits), "p10_ms": s.p10_ms, "p90_ms": s.p90_ms, "p99_ms": s.p99_ms,
            "mean_ms": s.mean_ms, "cov": s.cov, "n_samples": s.n_samples, "samples_json": json.dumps(samples),
            "attempts": len(visits), "unstable": not details["settled"], "measured_at": new["measured_at"],
            "details_json": json.dumps(details, sort_keys=True, default=str)}


def refine(spec: Candidate, workload: Workload, backend: Backend, store: LatencyStore,
           details: dict[str, Any] | None = None, force: bool = False) -> LatencyResult:
    """One more visit of a windowed protocol's row, taken no sooner than the plan's gap after the last one
    (sleeping if needed) and merged into the row. A settled row is returned as it is unless ``force``."""
    t0 = time.perf_counter()
    plan = backend.protocol.windows
    if plan is None:
        raise ValueError(f"protocol {backend.protocol.name} has no visits to refine")
    key = latency_key(spec, workload, backend)
    device = backend.fingerprint()["device"]
    old = store.get(key)
    if old is None or old["status"] != "ok" or not visits_of(old):
        return measure_or_get(spec, workload, backend, store, details)
    if is_settled(old) and not force:
        return _result(_full(old, key), device, True, time.perf_counter() - t0, 0.0)
    merged, waited_s = next_visit(old, spec, workload, backend, store, details)
    if merged is not old:
        store.replace(key.digest, merged)
    return _result(_full(store.get(key) or merged, key), device, False, time.perf_counter() - t0, waited_s)


def next_visit(row: dict[str, Any], spec: Candidate, workload: Workload, backend: Backend, store: LatencyStore,
               details: dict[str, Any] | None = None) -> tuple[dict[str, Any], float]:
    """``row`` with one more visit, taken no sooner than the plan's gap after its last one (sleeping if needed);
    not stored. Returns the row (the same object when the visit failed) and the seconds the device lock took."""
    plan = backend.protocol.windows
    if plan is None:
        raise ValueError(f"protocol {backend.protocol.name} has no visits")
    visits = visits_of(row)
    pause = visits[-1].at + plan.gap_s - time.time()
    if pause > 0:
        time.sleep(pause)
    # v3+: the row's last visit, when none was outside a slow spell, waits the spell out whatever the ration
    final = len(visits) + 1 >= plan.visits and all(in_spell(visits, plan.spell_tol))
    with device_lock(backend) as lock, last_chance(plan.last_chance_s) if final else nullcontext():
        new, _cacheable = measure_row(spec, workload, backend, store, details)
    return (_merged(row, new, plan) if new["status"] == "ok" else row), lock.waited_s


def settle_all(items: list[tuple[Candidate, Workload]], backend: Backend, store: LatencyStore,
               details: dict[str, Any] | None = None) -> list[LatencyResult]:
    """Every item's row measured (cache first) and then visited in rounds, one visit per unsettled row per
    round, until all are settled: interleaving spreads each net's visits in time without idle waits."""
    results = [measure_or_get(spec, workload, backend, store, details) for spec, workload in items]
    if backend.protocol.windows is None:
        return results
    for _ in range(backend.protocol.windows.visits):
        pending = [i for i, r in enumerate(results) if r.ok and not r.settled]
        if not pending:
            break
        for i in pending:
            results[i] = refine(*items[i], backend, store, details)
    return results


def _full(row: dict[str, Any], key: LatencyKey) -> dict[str, Any]:
    w = key.workload
    return {**row, "arch_id": key.arch_id, "backend": key.backend, "backend_version": key.backend_version,
            "protocol": key.protocol, "height": w.height, "width": w.width}


def stored_result(store: LatencyStore, key: LatencyKey, device: str, cached: bool,
                  measure_s: float = 0.0) -> LatencyResult | None:
    """The stored row of ``key`` as a result (measured on ``device``, e.g. by a latency agent), or None."""
    row = store.get(key)
    return None if row is None else _result(_full(row, key), device, cached, measure_s, 0.0)
