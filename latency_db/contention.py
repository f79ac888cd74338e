"""How much CPU other processes used while we timed: CPU latencies measured beside a busy process are
stretched (ONNX Runtime uses every core, so one busy core slows each parallel operator), and the
latency database keeps what it measured. Linux /proc only; elsewhere the answer is None."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# Other processes' average use, in CPUs, above which a CPU measurement is reported as contended.
CONTENDED_CPUS = 0.25


@dataclass(frozen=True)
class CpuSnapshot:
    wall_s: float
    busy_s: float | None   # all CPUs' non-idle time since boot
    own_s: float           # this process's user + system time (all its threads)


def snapshot() -> CpuSnapshot:
    """Counters to difference later with ``others_cpus``."""
    busy: float | None = None
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    own = os.times()
    return CpuSnapshot(time.perf_counter(), busy, own.user + own.system)


def others_cpus(before: CpuSnapshot, after: CpuSnapshot) -> float | None:
    """Average CPUs' worth of work other processes did between the snapshots (0 on a quiet machine)."""
    wall = after.wall_s - before.wall_s
    if before.busy_s is None or after.busy_s is None or wall <= 0:
        return None
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return max(0.0, others / wall)
