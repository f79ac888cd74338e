"""The CPU timing protocol for one-sided noise (issue #24): the estimator, visits, close calls, quiet waits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latency_db import LatencyStore, get_backend, latency_key, measure_or_get, workload_for
from latency_db.measure import is_settled, settle_all, visits_of
from latency_db.windows import Visit, WindowPlan, estimate_ms, settled, spread, time_visit
from nas.rundir import best_trial, trial_row
from nas.target import CLOSE_ABOVE, Budget
from nas.trial_record import TrialRecord
from search_spaces import ArchSpec, Conv

PLAN = WindowPlan(window_s=0.03, window_runs=2, visit_s=0.15, visit_windows=4, visits=3, gap_s=2.0,
                  settle_tol=0.03, busy_cpus=0.25, max_wait_s=1.0, max_visit_s=3.0)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def store(tmp_path: Path) -> LatencyStore:
    return LatencyStore(str(tmp_path / "latency.db"))


def sr_spec(width: int, layers: int = 2) -> ArchSpec:
    return ArchSpec(space="sr", scale=2, upsample="nearest", color="rgb", space_to_depth=1,
                    head=tuple(Conv(width=width, kernel=3) for _ in range(layers)), output_kernel=3)


class FakeClock:
    """A clock that a fake network advances: each run takes the next duration of ``durations_ms``."""

    def __init__(self, durations_ms: list[float]) -> None:
        self.now, self.durations = 0.0, iter(durations_ms)

    def __call__(self) -> float:
        return self.now

    def run(self) -> None:
        self.now += next(self.durations) / 1e3


def test_the_estimator_ignores_slow_spells_in_a_visit() -> None:
    # 5 ms quiet, with slow spells at 1.8x covering four of the visit's five windows (30 ms each): the one
    # quiet window sets the estimate
    durations = [5.0] * 2 + [9.0] * 4 + [5.0] * 6 + [9.0] * 40
    clock = FakeClock(durations)
    visit, samples = time_visit(clock.run, PLAN, warmup_s=0.0, warmup_runs=2, clock=clock, waited=lambda: 0.0,
                                quiet=lambda budget: 0.0)
    assert visit.estimate_ms == pytest.approx(5.0)
    assert len(visit.medians_ms) == 5 and visit.dirty == 0
    assert max(visit.medians_ms) == pytest.approx(9.0)  # the slow windows are kept, just not believed
    assert len(samples) >= 2 * len(visit.medians_ms)


def test_visits_settle_when_two_agree_or_after_the_plan_s_count() -> None:
    quiet, slow = Visit(at=0, medians_ms=(5.0, 5.1), dirty=0, waited_s=0), Visit(1, (8.0, 8.2), 0, 0)
    assert not settled([slow], PLAN) and not settled([slow, quiet], PLAN)
    assert settled([slow, quiet, Visit(2, (5.1,), 0, 0)], PLAN)  # two quiet visits agree within 3 %
    assert settled([slow, quiet, Visit(2, (6.0,), 0, 0)], PLAN)  # three visits: done, whatever they say
    assert estimate_ms([slow, quiet]) == 5.0 and spread([slow, quiet]) == pytest.approx(8.0 / 5.0 - 1)
    assert Visit.from_dict(json.loads(json.dumps(quiet.to_dict()))) == quiet


def test_windows_beside_a_busy_process_are_not_counted_and_it_is_waited_out() -> None:
    clock = FakeClock([5.0] * 400)
    waits = iter([0.0, 0.2] + [0.2 + i * 0.001 for i in range(400)])  # the first window waited 0.2 s of 0.03 s
    waited: list[float] = []

    def quiet(budget: float) -> float:
        waited.append(budget)
        return 0.5

    visit, _ = time_visit(clock.run, PLAN, 0.0, 2, clock=clock, waited=lambda: next(waits), quiet=quiet)
    assert visit.dirty == 1 and waited == [PLAN.max_wait_s] and visit.waited_s == 0.5
    assert all(m == pytest.approx(5.0) for m in visit.medians_ms)


def test_a_declined_wait_counts_the_windows_at_once() -> None:
    """A waiter that remembers a machine busy through a whole wait returns 0: the visit then times beside the
    neighbour (as after the wait budget) instead of discarding window after window until max_visit_s."""
    clock = FakeClock([5.0] * 400)
    busy = iter(i * 0.03 for i in range(400))  # every window waited a whole CPU's worth
    asked: list[float] = []

    def declining(budget: float) -> float:
        asked.append(budget)
        return 0.0

    visit, _ = time_visit(clock.run, PLAN, 0.0, 2, clock=clock, waited=lambda: next(busy), quiet=declining)
    assert asked == [PLAN.max_wait_s] and visit.dirty == 1 and visit.waited_s == 0.0
    assert len(visit.medians_ms) == PLAN.visit_windows and clock.now < 2 * PLAN.visit_s


def _busy_children(n: int, seconds: float) -> list[subprocess.Popen]:
    code = f"import time\nend = time.perf_counter() + {seconds}\nwhile time.perf_counter() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


@pytest.mark.slow
def test_a_real_busy_process_is_waited_for(store: LatencyStore) -> None:
    backend = get_backend("onnxruntime")
    spec = sr_spec(16)
    children = _busy_children(2, 20.0)  # both cores busy: ONNX Runtime's threads wait for a CPU
    try:
        time.sleep(0.3)
        result = measure_or_get(spec, workload_for(spec, 64, 96, "fp32"), backend, store)
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert result.ok and result.quiet_waited_s > 0
    visit = visits_of(store.rows_where(status="ok")[0])[0]
    assert visit.dirty >= 1 and visit.waited_s <= backend.protocol.windows.max_wait_s + 0.5


@pytest.mark.slow
def test_a_machine_busy_through_a_whole_wait_is_not_waited_for_again_until_the_holdoff_ends() -> None:
    """Waiting is bounded per visit and, on a machine that stays busy, per half minute: after a futile wait the
    next ones return at once (real spinning processes on both cores)."""
    from latency_db.windows import QuietWait

    waiter = QuietWait(holdoff_s=2.0)
    children = _busy_children(2, 20.0)
    try:
        time.sleep(0.3)
        assert waiter(0.5) >= 0.5                # no quiet moment in the whole budget
        assert waiter(0.5) == 0.0                # remembered: no second wait
        time.sleep(2.1)
        assert waiter(0.5) >= 0.5                # the hold-off is over: wait again (still busy)
        waiter.forget()
        assert waiter(0.3) >= 0.3
    finally:
        for child in children:
            child.kill()
            child.wait()


@pytest.mark.slow
def test_rows_gain_visits_until_settled_and_keep_every_window(store: LatencyStore) -> None:
    backend = get_backend("onnxruntime")
    specs = [sr_spec(8), sr_spec(16)]
    items = [(s, workload_for(s, 32, 48, "fp32")) for s in specs]
    first = [measure_or_get(s, w, backend, store) for s, w in items]
    assert all(r.visits == 1 and r.first_ms == pytest.approx(r.median_ms, abs=1e-4) for r in first)
    results = settle_all(items, backend, store)
    rows = store.rows_where(status="ok")
    assert all(is_settled(r) for r in rows) and all(r.settled and r.visits >= 2 for r in results)
    for r, row in zip(results, sorted(rows, key=lambda row: [s.arch_id for s in specs].index(row["arch_id"]))):
        visits = visits_of(row)
        assert len(visits) == r.visits and r.median_ms == pytest.approx(estimate_ms(visits))
        assert r.median_ms <= r.first_ms  # more visits can only find a quieter moment
        assert visits[1].at - visits[0].at >= backend.protocol.windows.gap_s - 0.01


@pytest.mark.slow
def test_a_close_call_is_retimed_before_the_gate(store: LatencyStore) -> None:
    from nas.search.verification import settle_close_call

    backend = get_backend("onnxruntime")
    spec = sr_spec(16)
    w = workload_for(spec, 32, 48, "fp32")
    latency = measure_or_get(spec, w, backend, store)
    target = _target_at(latency.median_ms / 1.1, backend, w)  # measured 10 % over: a close call
    assert target.budget.close_call(latency.median_ms) and not target.budget.close_call(latency.median_ms * 2)
    again = settle_close_call(target, store, spec, latency, {})
    assert again.visits >= 2 and again.median_ms <= latency.median_ms
    far = _target_at(latency.median_ms / (1 + CLOSE_ABOVE) / 1.5, backend, w)  # far over: decided at once
    assert settle_close_call(far, store, sr_spec(8), measure_or_get(sr_spec(8), w, backend, store), {}).visits >= 1


def _target_at(limit_ms: float, backend, workload):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    return SimpleNamespace(budget=Budget(limit_ms), backend=backend, workload=workload)


def _record(arch: str, median: float, gain: float) -> TrialRecord:
    return TrialRecord.of({"arch_id": arch, "latency": {"median_ms": median, "p90_ms": median, "first_ms": median},
                           "train": {"psnr_gain_db": gain}})


def test_the_verification_round_can_change_the_winner() -> None:
    budget = Budget(4.0)
    records = {0: _record("a" * 16, 3.9, 1.0), 1: _record("b" * 16, 3.0, 0.8)}
    before = [trial_row(n, "COMPLETE", r, budget) for n, r in records.items()]
    assert best_trial(before).number == 0
    verified = {0: {"median_ms": 4.3, "p90_ms": 4.4, "visits": 3}, 1: {"median_ms": 2.9, "p90_ms": 3.0, "visits": 3}}
    after = [trial_row(n, "COMPLETE", r, budget, verified) for n, r in records.items()]
    assert best_trial(after).number == 1
    assert after[0].verdict_change == "over the budget after re-timing" and after[0].latency_first_ms == 3.9
    assert after[0].latency_ms == 4.3 and after[0].verified and after[1].verdict_change == ""


def test_gpu_protocols_keep_trtexec_s_and_old_cpu_rows_keep_theirs() -> None:
    """Issue #24 changes CPU timing only: GPU protocols have no window plan (one trtexec-style block, as before),
    and the v1 CPU protocols stay selectable under their own names, so their rows never answer for v2 ones."""
    from latency_db.backends.cpu import CPU_PROTOCOLS
    from latency_db.backends.cuda_timing import GPU_PROTOCOLS

    assert {p.name for p in GPU_PROTOCOLS.values()} == {"gpu-fast-v1", "gpu-trtexec-v1"}
    assert all(p.windows is None for p in GPU_PROTOCOLS.values())
    assert CPU_PROTOCOLS["fast-v1"].name == "cpu-fast-v1" and CPU_PROTOCOLS["fast-v1"].windows is None
    assert CPU_PROTOCOLS["fast"].windows is not None and CPU_PROTOCOLS["fast"].name != CPU_PROTOCOLS["fast-v1"].name
    net = sr_spec(8)
    v1, v2 = get_backend("onnxruntime", protocol="fast-v1"), get_backend("onnxruntime")
    workload = workload_for(net, 32, 32, "fp32")
    assert latency_key(net, workload, v1).digest != latency_key(net, workload, v2).digest
