"""The machine's slow spells (issue #24, cpu-*-v3): the probe's watch waits them out, visits taken in one settle
nothing, and a real row of the default protocol carries the probe's readings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from latency_db import LatencyStore, get_backend, measure_or_get, workload_for
from latency_db.backends.cpu import CPU_PROTOCOLS
from latency_db.backends.onnxruntime import OnnxRuntimeBackend
from latency_db.measure import settle_all, visits_of
from latency_db.spells import SpellWatch, last_chance
from latency_db.windows import Visit, WindowPlan, in_spell, settled, time_visit
from nas.target import CLOSE_ABOVE, SPELL_ABOVE, Budget
from search_spaces import ArchSpec, Conv

PLAN = WindowPlan(window_s=0.03, window_runs=2, visit_s=0.15, visit_windows=4, visits=3, gap_s=2.0,
                  settle_tol=0.03, busy_cpus=0.25, max_wait_s=1.0, max_visit_s=3.0, spell_tol=0.15,
                  max_spell_wait_s=20.0)


class Machine:
    """A fake machine in a slow spell until ``spell_ends`` (seconds on its clock): every run, the probe's and the
    candidate's, takes ``slow`` times longer then. Sleeping advances the clock."""

    def __init__(self, spell_ends: float, slow: float = 1.5) -> None:
        self.now, self.spell_ends, self.slow, self.sleeps = 0.0, spell_ends, slow, 0

    def __call__(self) -> float:
        return self.now

    def factor(self) -> float:
        return self.slow if self.now < self.spell_ends else 1.0

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds

    def probe(self) -> float:
        ms = 1.0 * self.factor()
        self.now += 0.03
        return ms

    def run(self) -> None:
        self.now += 5.0 * self.factor() / 1e3


def watch_on(machine: Machine) -> SpellWatch:
    return SpellWatch(holdoff_s=60.0, poll_s=0.5, sleep=machine.sleep, now=machine)


def test_a_visit_waits_out_a_slow_spell_and_times_after_it() -> None:
    machine = Machine(spell_ends=4.0)
    watch = watch_on(machine)
    watch.best_ms = 1.0  # the probe's quiet reading, seen earlier in the process
    visit, _ = time_visit(machine.run, PLAN, 0.0, 2, clock=machine, waited=lambda: 0.0, quiet=lambda b: 0.0,
                          probe=machine.probe, watch=watch)
    assert visit.estimate_ms == pytest.approx(5.0) and max(visit.medians_ms) == pytest.approx(5.0)
    assert visit.probe_ms == pytest.approx(1.0) and visit.probe_best_ms == pytest.approx(1.0)
    assert 4.0 - 0.03 <= visit.spell_waited_s <= 4.0 + 0.6  # slept in 0.5 s looks until the spell ended
    # without the probe the same visit is timed inside the spell
    machine = Machine(spell_ends=4.0)
    plain, _ = time_visit(machine.run, PLAN, 0.0, 2, clock=machine, waited=lambda: 0.0, quiet=lambda b: 0.0)
    assert plain.estimate_ms == pytest.approx(7.5) and plain.probe_ms is None and plain.spell_waited_s == 0.0


def test_a_slow_reading_is_read_again_at_once_before_sleeping() -> None:
    readings = iter([1.0, 1.4, 1.02])  # a quiet reading, then one slowed by the candidate's evicting the caches
    sleeps: list[float] = []
    watch = SpellWatch(sleep=sleeps.append, now=lambda: 0.0)
    assert watch.wait(lambda: next(readings), 0.15, 10.0)[2] == 0.0
    ms, best, _ = watch.wait(lambda: next(readings), 0.15, 10.0)
    assert (ms, best) == (1.02, 1.0) and sleeps == []


def test_a_spell_that_outlasts_the_budget_is_not_waited_for_again_during_the_holdoff() -> None:
    machine = Machine(spell_ends=1000.0)
    watch = watch_on(machine)
    watch.best_ms = 1.0
    ms, _best, waited = watch.wait(machine.probe, 0.15, 5.0)
    assert ms == pytest.approx(1.5) and 5.0 <= waited <= 5.6
    sleeps = machine.sleeps
    ms, _best, waited = watch.wait(machine.probe, 0.15, 5.0)  # within the hold-off: one reading, no wait
    assert ms == pytest.approx(1.5) and waited == 0.0 and machine.sleeps == sleeps
    machine.now += 61.0  # the hold-off is over: waits again
    assert watch.wait(machine.probe, 0.15, 5.0)[2] >= 5.0 and machine.sleeps > sleeps


def test_waiting_is_rationed_to_the_time_spent_timing_but_not_on_a_row_s_last_chance() -> None:
    machine = Machine(spell_ends=1000.0)
    watch = watch_on(machine)
    watch.best_ms, watch.credit_s = 1.0, 5.0
    waited = watch.wait(machine.probe, 0.15, 30.0, share=1.0)[2]  # the start credit, never overspent
    assert 4.4 <= waited <= 5.0 and watch.credit_s == pytest.approx(5.0 - waited)
    left = watch.credit_s  # less than one look: the next visit in the spell is timed at once
    assert watch.wait(machine.probe, 0.15, 30.0, share=1.0)[2] <= left
    for _ in range(8):  # eight visits of 0.25 s or more earn two seconds of waiting
        watch.earn(1.0, share=1.0)
    credit = watch.credit_s
    assert credit - 0.6 <= watch.wait(machine.probe, 0.15, 30.0, share=1.0)[2] <= credit
    with last_chance(10.0):  # a row's last chance: its own budget, credit or not, within the per-visit budget
        assert 10.0 <= watch.wait(machine.probe, 0.15, 30.0, share=1.0)[2] <= 10.6
    machine.now += 61.0  # (the spent budget's hold-off is over)
    with last_chance(60.0):
        assert 30.0 <= watch.wait(machine.probe, 0.15, 30.0, share=1.0)[2] <= 30.6
    for _ in range(200):
        watch.earn(100.0, share=1.0)
    assert watch.credit_s == pytest.approx(30.0)  # saved up to MAX_CREDIT_S


class SpellBoundBackend(OnnxRuntimeBackend):
    """ONNX Runtime timing for real, with a probe that reads a slow spell that never ends (a fake clock and sleep)."""

    def __init__(self) -> None:
        super().__init__()
        self.machine = Machine(spell_ends=float("inf"))
        self.watch = watch_on(self.machine)
        self.watch.best_ms, self.watch.credit_s = 1.0, 0.0

    def spell_probe(self):  # type: ignore[no-untyped-def]
        return self.machine.probe, self.watch


def test_a_row_timed_only_in_spells_waits_on_its_last_visit(tmp_path: Path) -> None:
    backend = SpellBoundBackend()
    spec = ArchSpec(space="sr", scale=2, upsample="nearest", color="rgb", space_to_depth=1,
                    head=(Conv(width=8, kernel=3),), output_kernel=3)
    store = LatencyStore(str(tmp_path / "latency.db"))
    result = settle_all([(spec, workload_for(spec, 16, 16, "fp32"))], backend, store)[0]
    visits = visits_of(store.rows_where(status="ok")[0])
    assert result.settled and len(visits) == 3 and all(in_spell(visits, 0.15))
    assert all(v.spell_waited_s < 1.0 for v in visits[:2])  # rationed: the credit was a few timed seconds at most
    last = backend.protocol.windows.last_chance_s
    assert 10.0 <= last < backend.protocol.windows.max_spell_wait_s  # the default plan's last chance: 10 s of 30
    assert visits[2].spell_waited_s >= last and result.spell_waited_s >= last  # the last chance waited its budget
    assert result.in_spell  # and the search treats it as a close call further above the budget


def test_a_row_timed_only_in_spells_is_a_close_call_further_above_the_budget() -> None:
    budget = Budget(4.0)
    over = 4.0 * (1 + (CLOSE_ABOVE + SPELL_ABOVE) / 2)
    assert not budget.close_call(over) and budget.close_call(over, in_spell=True)
    assert not budget.close_call(4.0 * (1 + SPELL_ABOVE) * 1.01, in_spell=True)
    assert budget.close_call(4.0 * 0.96) and budget.close_call(4.0 * 0.96, in_spell=True)


def test_visits_in_a_spell_settle_nothing_and_a_better_probe_reading_reclassifies_them() -> None:
    # two visits in a spell agree (7.5 ms), the probe then thought 1.5 ms its best: settled, as v2 would
    slow = [Visit(at=t, medians_ms=(7.5,), dirty=0, waited_s=0, probe_ms=1.5, probe_best_ms=1.5) for t in (0, 2)]
    assert in_spell(slow, 0.15) == [False, False] and settled(slow, PLAN)
    # a third visit after the spell knows a quieter probe (1.0 ms): the first two were in a spell
    quiet = Visit(at=60, medians_ms=(5.0,), dirty=0, waited_s=0, probe_ms=1.0, probe_best_ms=1.0)
    assert in_spell([*slow, quiet], 0.15) == [True, True, False]
    assert not settled([slow[0], quiet], PLAN)  # they disagree: a third visit decides
    calm = Visit(at=4, medians_ms=(5.05,), dirty=0, waited_s=0, probe_ms=1.5, probe_best_ms=1.5)
    assert settled([calm, quiet], PLAN)  # in a spell, yet level with a visit outside one: this net was not slowed
    again = Visit(at=62, medians_ms=(5.1,), dirty=0, waited_s=0, probe_ms=1.03, probe_best_ms=1.0)
    assert settled([slow[0], quiet, again], PLAN)
    # v2 rows (no probe) settle as before
    v2 = [replace(v, probe_ms=None, probe_best_ms=None) for v in slow]
    assert in_spell(v2, 0.15) == [False, False] and settled(v2, PLAN)
    assert Visit.from_dict(quiet.to_dict()) == quiet and "probe_ms" not in v2[0].to_dict()


def test_the_default_cpu_protocol_reads_the_probe_before_every_visit(tmp_path: Path) -> None:
    backend = get_backend("onnxruntime")
    assert backend.protocol is CPU_PROTOCOLS["fast"] and backend.protocol.name == "cpu-fast-v4"
    assert backend.protocol.windows is not None and backend.protocol.windows.spell_tol is not None
    assert CPU_PROTOCOLS["fast-v2"].windows is not None and CPU_PROTOCOLS["fast-v2"].windows.spell_tol is None
    store = LatencyStore(str(tmp_path / "latency.db"))
    specs = [ArchSpec(space="sr", scale=2, upsample="nearest", color="rgb", space_to_depth=1,
                      head=(Conv(width=w, kernel=3),), output_kernel=3) for w in (8, 16)]
    items = [(s, workload_for(s, 32, 48, "fp32")) for s in specs]
    results = settle_all(items, backend, store)
    assert all(r.ok and r.settled and r.protocol == "cpu-fast-v4" for r in results)
    for row in store.rows_where(status="ok"):
        visits = visits_of(row)
        assert visits and all(v.probe_ms is not None and v.probe_ms > 0 for v in visits)
        assert all(v.probe_best_ms is not None and v.probe_best_ms <= v.probe_ms for v in visits)
    # a v2 row of the same net is its own row, without probe readings, and answers nothing for v3
    v2 = measure_or_get(specs[0], items[0][1], get_backend("onnxruntime", protocol="fast-v2"), store)
    assert v2.protocol == "cpu-fast-v2" and not v2.cached
    row = next(r for r in store.rows_where(status="ok") if r["protocol"] == "cpu-fast-v2")
    assert all(v.probe_ms is None for v in visits_of(row))
