"""The machine's slow spells, read by a probe network and waited out (the ``cpu-*-v3`` protocols; docs/latency.md,
"Slow spells").

On a 2-vCPU guest a small net timed with 2 threads switches, for 5-60 s at a time, between two speeds (1.2-1.5x
apart) while the same net with 1 thread does not move, and every 2-thread net in every process is slow at the same
moments (reports/latency_repeat.md, "Sixth session" and "Seventh session"). The kernel sees nothing (no steal, no
wait). So before each visit the timer reads a fixed probe net, whose window median is about 1.5x its best in a
spell and within a few % of it outside one; a reading more than ``spell_tol`` above the best seen in this process
means a spell, and the visit waits (bounded) for it to end, as it waits for a busy neighbour. Spells can fill most
of several minutes, so waiting is rationed: ``cpu-fast-v3`` may wait 0.3 s per second it has timed (a credit of
seconds, earned by visits), to keep its cost within 1.5x of v2's per candidate; but a row's last visit, when none
of its visits was outside a spell, waits whatever the credit, for the plan's ``last_chance_wait_s`` (``last_chance``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from search_spaces import ArchSpec, Conv

# spell-probe-v1. Never change this network: stored probe readings are only comparable with its own; a new one
# needs a new protocol version. One 3x3/64 luma conv at 135x240: the most spell-sensitive of the nets measured
# (1.5x in a spell, 1.17 ms quiet).
SPELL_PROBE = ArchSpec(space="sr", scale=2, upsample="nearest", color="luma", space_to_depth=1,
                       head=(Conv(width=64, kernel=3),), output_kernel=1)
PROBE_SHAPE = (135, 240)
PROBE_WINDOW_S = 0.03  # one reading: runs for this long (about 25 of the probe's), their median ...
PROBE_WARM_S = 0.02    # ... after runs for this long: the candidate's runs evicted the probe's caches
POLL_S = 0.5           # while a spell lasts, look again this often
START_CREDIT_S = 3.0   # seconds of waiting a process may spend before it has timed anything
MAX_CREDIT_S = 30.0    # credit saved at most (a search trains for minutes between measurements)
EARN_CAP_S = 0.25      # a visit earns credit for this many of its seconds at most (a small net's visit; a large
                       # net's slow second visit must not buy minutes of waiting: spells barely move large nets)


def probe_window(run: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> float:
    """One reading of the probe: runs for PROBE_WARM_S, then runs for PROBE_WINDOW_S; their median in ms."""
    start = clock()
    while clock() - start < PROBE_WARM_S:
        run()
    runs: list[float] = []
    start = clock()
    while len(runs) < 3 or clock() - start < PROBE_WINDOW_S:
        t = clock()
        run()
        runs.append((clock() - t) * 1e3)
    return statistics.median(runs)


class SpellWatch:
    """One probe's best reading in this process, and the wait for a spell to end.

    ``read`` returns the probe's window median and the best so far (this reading included). ``wait`` reads until
    a reading is within ``tol`` of the best or ``budget_s`` is spent; a wait that spends its whole budget means the
    slow speed may be the machine's speed for now, so for ``holdoff_s`` afterwards ``wait`` reads once and returns.
    With a ``share``, waiting also spends a credit that ``earn`` fills with ``share`` seconds per second timed.
    """

    def __init__(self, holdoff_s: float = 60.0, poll_s: float = POLL_S,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.monotonic) -> None:
        self.best_ms = float("inf")
        self.holdoff_s, self.poll_s, self.sleep, self.now = holdoff_s, poll_s, sleep, now
        self.busy_until = float("-inf")
        self.credit_s = START_CREDIT_S

    def earn(self, timed_s: float, share: float | None) -> None:
        """Credit for waiting: ``share`` seconds per second of a visit's timing, EARN_CAP_S of it at most (unlimited
        waits when None)."""
        if share is not None:
            self.credit_s = min(MAX_CREDIT_S, self.credit_s + share * min(timed_s, EARN_CAP_S))

    def read(self, probe: Callable[[], float]) -> tuple[float, float]:
        ms = probe()
        self.best_ms = min(self.best_ms, ms)
        return ms, self.best_ms

    def wait(self, probe: Callable[[], float], tol: float, budget_s: float,
             share: float | None = None) -> tuple[float, float, float]:
        """Read the probe until it is out of a spell or the budget (and, with a ``share``, the credit) is spent:
        (probe ms, best ms, seconds waited after the first reading; 0 when it found no spell)."""
        ms, best = self.read(probe)
        start = self.now()
        if self.now() < self.busy_until:
            return ms, best, 0.0
        looks = 0
        last_chance = _LAST_CHANCE_S.get()
        rationed = share is not None and last_chance is None
        if last_chance is not None:
            budget_s = min(budget_s, last_chance)
        while ms > best * (1 + tol):
            if rationed and self.now() - start + (self.poll_s if looks else 0.0) > self.credit_s:
                break  # rationed: the next look would overspend the credit; the visit is timed in the spell
            if self.now() - start >= budget_s:
                self.busy_until = self.now() + self.holdoff_s
                break
            if looks:  # the first slow reading is read again at once: the candidate's runs may have evicted the probe
                self.sleep(self.poll_s)
            looks += 1
            ms, best = self.read(probe)
        waited = (self.now() - start) if looks else 0.0
        if share is not None:
            self.credit_s = max(0.0, self.credit_s - waited)
        return ms, best, waited


_WATCHES: dict[str, SpellWatch] = {}
_LAST_CHANCE_S: ContextVar[float | None] = ContextVar("last_chance_s", default=None)


@contextmanager
def last_chance(budget_s: float) -> Iterator[None]:
    """Waits inside this block ignore the credit and last ``budget_s`` at most (a row's last chance to be timed
    outside a spell)."""
    token = _LAST_CHANCE_S.set(budget_s)
    try:
        yield
    finally:
        _LAST_CHANCE_S.reset(token)


def watch_for(key: str) -> SpellWatch:
    """This process's watch for one probe (a backend's probe session: one per backend, threads and precision)."""
    if key not in _WATCHES:
        _WATCHES[key] = SpellWatch()
    return _WATCHES[key]
