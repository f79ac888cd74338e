"""Windowed CPU timing for one-sided noise (the ``cpu-*-v2`` and ``-v3`` protocols; docs/latency.md, "CPU timing").

A CPU guest is sometimes slow for seconds at a time and never faster than when quiet; the kernel
does not see it (no steal, no run-queue wait: docs/latency.md, "CPU timing"). So a candidate is timed in
*visits* a few seconds apart, each a burst of short windows, and its latency is the minimum of the
window medians: a slow spell can only add time, and one that lasts seconds rarely covers every visit.
Two visits that agree within ``settle_tol`` settle the estimate early; otherwise a third decides. A
window during which another process kept our threads waiting for a CPU (``/proc/self/task/*/schedstat``)
is not counted: the timer waits, bounded, for a quiet moment and goes on (and, after a wait that
found none, does not wait again for half a minute). The v3 protocols also read a probe net before each visit
and wait out the machine's slow spells (latency_db/spells.py); two visits taken in a spell all the same do not
settle a row by agreeing (one of the two must be outside a spell).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from latency_db.stats import percentile

if TYPE_CHECKING:
    from latency_db.spells import SpellWatch


@dataclass(frozen=True)
class WindowPlan:
    """How a windowed protocol samples. Part of the protocol: change a number, bump the protocol name."""

    window_s: float        # a window lasts at least this long ...
    window_runs: int       # ... and holds at least this many runs (its median is the window's number)
    visit_s: float         # a visit times windows for at least this long ...
    visit_windows: int     # ... and at least this many clean windows
    visits: int            # visits at most; a row with this many is settled
    gap_s: float           # seconds between the starts of two visits at least (slow spells last seconds)
    settle_tol: float      # two visits whose estimates agree within this (relative) settle the row early
    busy_cpus: float       # a window in which our threads waited longer than this (CPUs' worth) is dirty
    max_wait_s: float      # per visit, seconds spent waiting for a quiet moment at most
    max_visit_s: float     # per visit, timing seconds at most (a very slow net)
    spell_tol: float | None = None  # v3: a probe reading this far (relative) above its best is a slow spell ...
    max_spell_wait_s: float = 0.0   # ... which a visit waits out for this long at most (latency_db/spells.py),
    spell_wait_share: float | None = None  # and the process as long as this share of its timing (None: no ration)
    last_chance_wait_s: float | None = None  # a row's last visit, all others in a spell: unrationed, this long at most
                                             # (None: max_spell_wait_s)

    @property
    def last_chance_s(self) -> float:
        """Seconds a row's last chance may wait for a spell to end, whatever the ration."""
        return self.max_spell_wait_s if self.last_chance_wait_s is None else self.last_chance_wait_s


QUIET_POLL_S = 0.1  # one look at the machine's load while waiting for a quiet moment


@dataclass(frozen=True)
class Visit:
    """One burst of windows: when it started (epoch seconds), its clean windows' medians, its dirty windows;
    v3: the probe's reading just before it, the probe's best in the process then, and the seconds a spell cost."""

    at: float
    medians_ms: tuple[float, ...]
    dirty: int
    waited_s: float
    probe_ms: float | None = None
    probe_best_ms: float | None = None
    spell_waited_s: float = 0.0

    @property
    def estimate_ms(self) -> float:
        return min(self.medians_ms)

    def to_dict(self) -> dict[str, Any]:
        # medians unrounded: the row's latency is their minimum, and must read back as stored
        d = {"at": round(self.at, 3), "medians_ms": list(self.medians_ms),
             "dirty": self.dirty, "waited_s": round(self.waited_s, 3)}
        if self.probe_ms is not None:
            d.update(probe_ms=self.probe_ms, probe_best_ms=self.probe_best_ms,
                     spell_waited_s=round(self.spell_waited_s, 3))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Visit:
        probe, best = d.get("probe_ms"), d.get("probe_best_ms")
        return cls(at=float(d["at"]), medians_ms=tuple(float(m) for m in d["medians_ms"]), dirty=int(d["dirty"]),
                   waited_s=float(d["waited_s"]), probe_ms=None if probe is None else float(probe),
                   probe_best_ms=None if best is None else float(best),
                   spell_waited_s=float(d.get("spell_waited_s", 0.0)))


def in_spell(visits: Sequence[Visit], tol: float | None) -> list[bool]:
    """Which visits the probe read inside a slow spell: more than ``tol`` above the best probe reading any of the
    row's visits knew of (a later visit may know a better one). None of them for a plan or row without a probe."""
    best = [v.probe_best_ms for v in visits if v.probe_best_ms is not None]
    if tol is None or not best:
        return [False] * len(visits)
    return [v.probe_ms is not None and v.probe_ms > min(best) * (1 + tol) for v in visits]


def estimate_ms(visits: Sequence[Visit]) -> float:
    """The protocol's estimator: the minimum of every clean window median of every visit (a visit taken in a slow
    spell can only be slower, so it never sets the minimum while the row holds a visit outside one)."""
    return min(v.estimate_ms for v in visits)


def settled(visits: Sequence[Visit], plan: WindowPlan) -> bool:
    """Enough visits: the plan's count, or two whose estimates agree within ``settle_tol``, one of them at least
    outside a slow spell (a visit in a spell that agrees with one outside it was not slowed: the net is not
    sensitive to spells)."""
    if len(visits) >= plan.visits:
        return True
    ranked = sorted(zip((v.estimate_ms for v in visits), in_spell(visits, plan.spell_tol), strict=True))
    return any(b <= a * (1 + plan.settle_tol) and not (sa and sb) for (a, sa), (b, sb) in pairwise(ranked))


def spread(visits: Sequence[Visit]) -> float:
    """How far the slowest visit's estimate is above the fastest one's (0.25 = 25 % slower)."""
    ests = [v.estimate_ms for v in visits]
    return max(ests) / min(ests) - 1.0


def waiting_s() -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a CPU (Linux schedstat, ns-precise)."""
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile, or no schedstat
            continue
    return total / 1e9


class QuietWait:
    """Waits for a quiet moment, and remembers a machine that stayed busy through a whole wait.

    A wait that spends its whole budget without a quiet moment means a neighbour that keeps the cores busy
    (a build, a training, a second search); waiting again seconds later would only add the budget to every
    visit (50 visits x 5 s on a persistently loaded machine). So for ``holdoff_s`` after such a wait, waits
    return at once (the windows count, and the row is flagged contended as always); then a wait is tried again.
    """

    def __init__(self, holdoff_s: float = 30.0, poll_s: float = QUIET_POLL_S) -> None:
        self.holdoff_s, self.poll_s = holdoff_s, poll_s
        self.busy_until = 0.0  # time.monotonic() before which waiting is skipped

    def __call__(self, budget_s: float) -> float:
        """Sleep in short looks until other processes use at most CONTENDED_CPUS, or ``budget_s`` is spent;
        returns the seconds waited (0 while a futile wait is remembered)."""
        from latency_db.contention import CONTENDED_CPUS, others_cpus, snapshot

        if time.monotonic() < self.busy_until:
            return 0.0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < budget_s:
            before = snapshot()
            time.sleep(self.poll_s)
            others = others_cpus(before, snapshot())
            if others is None or others <= CONTENDED_CPUS:
                return time.perf_counter() - t0
        self.busy_until = time.monotonic() + self.holdoff_s
        return time.perf_counter() - t0

    def forget(self) -> None:
        """Wait again at the next call (a test that needs a fresh waiter, a new phase of work)."""
        self.busy_until = 0.0


wait_for_quiet = QuietWait()  # this process's waiter: every visit of every backend shares what it learnt


def time_visit(run: Callable[[], Any], plan: WindowPlan, warmup_s: float, warmup_runs: int,
               clock: Callable[[], float] = time.perf_counter,
               waited: Callable[[], float | None] = waiting_s,
               quiet: Callable[[float], float] = wait_for_quiet,
               probe: Callable[[], float] | None = None, watch: SpellWatch | None = None) -> tuple[Visit, list[float]]:
    """Wait out a slow spell (v3: ``probe`` times one reading of the probe net, ``watch`` keeps its best), warm up,
    then time ``run`` window by window for one visit; returns it and its clean windows' samples.

    ``clock``, ``waited`` and ``quiet`` are the host's by default; the unit tests pass fakes (and a fake ``probe``).
    """
    probe_ms = probe_best_ms = None
    spell_waited_s = 0.0
    if plan.spell_tol is not None and probe is not None and watch is not None:
        probe_ms, probe_best_ms, spell_waited_s = watch.wait(probe, plan.spell_tol, plan.max_spell_wait_s,
                                                             plan.spell_wait_share)
    at = time.time()
    start, n = clock(), 0
    while n < warmup_runs or clock() - start < warmup_s:
        run()
        n += 1
    medians: list[float] = []
    samples: list[float] = []
    dirty, waited_s, timing_s = 0, 0.0, 0.0
    waiting = True  # False once the waiter declines (it remembers a machine busy through a whole wait)
    while (len(medians) < plan.visit_windows or timing_s < plan.visit_s) and timing_s < plan.max_visit_s:
        w0, t0 = waited(), clock()
        runs: list[float] = []
        while len(runs) < plan.window_runs or clock() - t0 < plan.window_s:
            t = clock()
            run()
            runs.append((clock() - t) * 1e3)
        wall, w1 = clock() - t0, waited()
        timing_s += wall
        busy = w0 is not None and w1 is not None and (w1 - w0) / max(wall, 1e-9) > plan.busy_cpus
        if busy and waiting and waited_s < plan.max_wait_s:  # another process shares our cores: wait, don't time
            dirty += 1
            slept = quiet(plan.max_wait_s - waited_s)
            waited_s += slept
            waiting = slept > 0.0  # a declined wait: the windows count from now on, as after the wait budget
            continue
        medians.append(percentile(sorted(runs), 50))
        samples.extend(runs)
    if not medians:  # a net slower than max_visit_s per window: its one window counts
        medians.append(percentile(sorted(runs), 50))
        samples.extend(runs)
    if watch is not None:
        watch.earn(clock() - start, plan.spell_wait_share)
    return Visit(at=at, medians_ms=tuple(medians), dirty=dirty, waited_s=waited_s, probe_ms=probe_ms,
                 probe_best_ms=probe_best_ms, spell_waited_s=spell_waited_s), samples
