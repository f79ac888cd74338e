"""What the CPU backends share: their timing protocols, the thread count (physical cores) and the CPU's
fingerprint; a subclass names the library that runs its graphs."""

from __future__ import annotations

import importlib.util
from typing import Any

from latency_db.backends.base import Backend, Protocol
from latency_db.fingerprint import cpu_fingerprint, library_version, physical_cores
from latency_db.windows import WindowPlan

CPU_PROTOCOLS = {
    # fast-v4 and full-v3 (default): v2's visits and estimator, and before each visit a reading of a probe net that
    # waits out the machine's slow spells, 30 s at most, rationed to 0.3 s per second timed but on a row's last
    # chance, which waits 10 s whatever the ration (latency_db/spells.py; reports/latency_repeat.md, "Seventh
    # session" and "Eighth session").
    # One visit costs about 0.15 s of timing (a window: >= 30 ms, one run of a slow net) and 0.05 s of probe; a
    # row settles after two agreeing visits, not both in a spell, or three.
    "fast": Protocol(name="cpu-fast-v4", warmup_s=0.05, min_warmup_runs=1, min_runs=1, min_s=0.15,
                     require_both=True, max_s=3.0, max_runs=10_000, cov_threshold=0.05,
                     windows=WindowPlan(window_s=0.03, window_runs=1, visit_s=0.15, visit_windows=3, visits=3,
                                        gap_s=2.0, settle_tol=0.03, busy_cpus=0.25, max_wait_s=5.0,
                                        max_visit_s=3.0, spell_tol=0.25, max_spell_wait_s=30.0,
                                        spell_wait_share=0.3, last_chance_wait_s=10.0)),
    "full": Protocol(name="cpu-full-v3", warmup_s=0.5, min_warmup_runs=3, min_runs=3, min_s=1.0,
                     require_both=True, max_s=30.0, max_runs=100_000, cov_threshold=0.05,
                     windows=WindowPlan(window_s=0.1, window_runs=3, visit_s=1.0, visit_windows=8, visits=3,
                                        gap_s=2.0, settle_tol=0.02, busy_cpus=0.25, max_wait_s=10.0,
                                        max_visit_s=30.0, spell_tol=0.25, max_spell_wait_s=60.0)),
    # v3: as v4, but a row's last chance waited out spells for 30 s (the search's close calls waited minutes).
    "fast-v3": Protocol(name="cpu-fast-v3", warmup_s=0.05, min_warmup_runs=1, min_runs=1, min_s=0.15,
                        require_both=True, max_s=3.0, max_runs=10_000, cov_threshold=0.05,
                        windows=WindowPlan(window_s=0.03, window_runs=1, visit_s=0.15, visit_windows=3, visits=3,
                                           gap_s=2.0, settle_tol=0.03, busy_cpus=0.25, max_wait_s=5.0,
                                           max_visit_s=3.0, spell_tol=0.25, max_spell_wait_s=30.0,
                                           spell_wait_share=0.3)),
    # v2: windows in visits a few seconds apart, the minimum of window medians (latency_db/windows.py; the numbers
    # were chosen from traces of slow spells, docs/latency.md; checked: reports/latency_repeat.md).
    "fast-v2": Protocol(name="cpu-fast-v2", warmup_s=0.05, min_warmup_runs=1, min_runs=1, min_s=0.15,
                        require_both=True, max_s=3.0, max_runs=10_000, cov_threshold=0.05,
                        windows=WindowPlan(window_s=0.03, window_runs=1, visit_s=0.15, visit_windows=3, visits=3,
                                           gap_s=2.0, settle_tol=0.03, busy_cpus=0.25, max_wait_s=5.0,
                                           max_visit_s=3.0)),
    "full-v2": Protocol(name="cpu-full-v2", warmup_s=0.5, min_warmup_runs=3, min_runs=3, min_s=1.0,
                        require_both=True, max_s=30.0, max_runs=100_000, cov_threshold=0.05,
                        windows=WindowPlan(window_s=0.1, window_runs=3, visit_s=1.0, visit_windows=8, visits=3,
                                           gap_s=2.0, settle_tol=0.02, busy_cpus=0.25, max_wait_s=10.0,
                                           max_visit_s=30.0)),
    # v1: one block of samples, its median (rows of earlier versions stay readable and re-timeable under these).
    # Screening: a small candidate at 135x240 costs about a second with export and session build.
    "fast-v1": Protocol(name="cpu-fast-v1", warmup_s=0.05, min_warmup_runs=2, min_runs=10, min_s=0.3,
                        require_both=True, max_s=5.0, max_runs=10_000, cov_threshold=0.05),
    # Reference numbers: longer warm-up and at least 50 runs over 2 s.
    "full-v1": Protocol(name="cpu-full-v1", warmup_s=0.5, min_warmup_runs=5, min_runs=50, min_s=2.0,
                        require_both=True, max_s=30.0, max_runs=100_000, cov_threshold=0.05),
}


class CpuBackend(Backend):
    """A backend that times on this machine's CPU with ``threads`` intra-op threads."""

    is_gpu = False
    default_io_dtype = "fp32"
    protocols = CPU_PROTOCOLS
    library = ""  # the module that runs the graphs: the backend is available when it imports

    def __init__(self, protocol: str = "fast", threads: int | None = None) -> None:
        super().__init__(protocol)
        self.threads = threads or physical_cores()

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec(cls.library) is not None

    def version(self) -> str:
        return library_version(self.library) or "unknown"

    def _device_fingerprint(self) -> dict[str, Any]:
        return cpu_fingerprint(self.threads)
