"""What a running search shows and counts: the tally, the progress bar on stderr, the Ctrl-C flag."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    """Counters for the progress line and the summary."""

    n_done: int = 0
    latency_hits: int = 0
    train_hits: int = 0
    measure_s: float = 0.0
    train_s: float = 0.0
    lock_wait_s: float = 0.0
    contended: int = 0          # CPU measurements timed while other processes were busy
    close_calls: int = 0        # first estimates within the noise band of the budget, re-timed before the gate
    quiet_waits: int = 0        # measurements that waited for other processes to pause before timing on
    spell_waits: int = 0        # measurements that waited for a slow spell of the machine to end (cpu-*-v3)
    stopped: int = 0            # trainings the pruner stopped at a rung
    resumed: int = 0            # trainings that went on from a checkpoint stopped at a rung
    timed_out: bool = False     # --timeout ended the loop before the run dir had its trials
    best_gain: float | None = None
    best_latency: float | None = None
    started: float = field(default_factory=time.perf_counter)

    def count_measurement(self, latency: Any, retimed: bool) -> None:
        """Count one candidate's LatencyResult as the gate saw it (``retimed``: a close call visited again)."""
        self.close_calls += int(retimed)
        self.quiet_waits += int(not latency.cached and latency.quiet_waited_s > 0)
        self.spell_waits += int(not latency.cached and latency.spell_waited_s > 0)
        self.lock_wait_s += latency.lock_wait_s
        self.measure_s += latency.measure_s - latency.lock_wait_s
        self.latency_hits += int(latency.cached)


class Progress:
    """Trial n/N, best so far, cache hits and time split, on stderr; silent when asked or not a TTY."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar = None
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=sys.stderr, unit="trial", dynamic_ncols=True)

    def update(self, tally: Tally, initial: int = 0) -> None:
        if self.bar is None:
            return
        best = "-" if tally.best_gain is None else f"{tally.best_gain:+.2f} dB @ {tally.best_latency:.2f} ms"
        self.bar.set_postfix_str(
            f"best {best} | pruned {tally.stopped} | hits lat {tally.latency_hits} train {tally.train_hits} | "
            f"measure {tally.measure_s:.0f}s train {tally.train_s:.0f}s wait {tally.lock_wait_s:.0f}s",
            refresh=False,
        )
        self.bar.n = initial
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class StopFlag:
    """First Ctrl-C: finish the current trial, then stop cleanly. Second: abort now."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self, say: Any) -> Iterator[StopFlag]:
        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            say("interrupt: finishing the current trial, then stopping (Ctrl-C again to abort)")

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

