"""Drift control on CPUs: one fixed canary network per device, timed again and again.

A CPU's speed moves with its neighbours, its clocks and the host (2x between moments was seen on
a shared guest; reports/latency_db.md). The canary is timed at a search's start and periodically
during it, each reading stored in the database (``canary_runs``). Its baseline is the median of the
first BASELINE_READINGS readings ever stored for the scope (device key, backend and version,
builder, protocol, input size); a reading more than DRIFT from it means the machine now times
differently from when the baseline was taken, and every latency measured meanwhile is suspect.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

from latency_db.backends import Backend
from latency_db.candidates import workload_for
from latency_db.contention import others_cpus, snapshot
from latency_db.fingerprint import canonical, digest, host
from latency_db.lock import device_lock
from latency_db.stats import summarize
from latency_db.store import LatencyStore, now_iso
from search_spaces import ArchSpec, Conv

# Never change this network: its history is only comparable with itself. A new one needs a new name.
CANARY_NAME = "canary-v1"
CANARY = ArchSpec(space="sr", scale=2, upsample="bilinear", color="rgb", space_to_depth=1,
                  head=(Conv(width=32, kernel=3), Conv(width=32, kernel=3)), output_kernel=3)
DRIFT = 0.10
BASELINE_READINGS = 3


@dataclass(frozen=True)
class CanaryReading:
    """One timing of the canary against its stored baseline."""

    median_ms: float
    cov: float
    baseline_ms: float
    readings: int                 # readings stored for this scope, this one included
    background_cpus: float | None

    @property
    def ratio(self) -> float:
        return self.median_ms / self.baseline_ms

    @property
    def drifted(self) -> bool:
        return abs(self.ratio - 1.0) > DRIFT

    def warning(self) -> str | None:
        """One line saying the machine drifted, or None when the canary is within DRIFT of its baseline."""
        if not self.drifted:
            return None
        busy = "" if self.background_cpus is None else f", other processes used {self.background_cpus:.1f} CPUs"
        return (f"warning: the drift canary now takes {self.median_ms:.3f} ms, {self.ratio:.2f}x its baseline "
                f"{self.baseline_ms:.3f} ms (more than {100 * DRIFT:.0f} % off{busy}): latencies measured now are "
                "not comparable with the stored ones; the ratio is recorded with each new measurement")


class Canary:
    """The canary of one backend at one input size, with its history in ``store``."""

    def __init__(self, backend: Backend, height: int, width: int, store: LatencyStore) -> None:
        self.backend, self.store = backend, store
        self.workload = workload_for(CANARY, height, width, backend.default_io_dtype)
        fp = backend.fingerprint()
        self.scope = {"device": fp["key"], "backend": backend.name, "backend_version": fp["backend_version"],
                      "builder": backend.builder_settings(self.workload), "protocol": backend.protocol.name,
                      "workload": self.workload.to_dict()}
        self.scope_hash = digest(self.scope)
        self.last: CanaryReading | None = None

    def read(self, context: str) -> CanaryReading:
        """Time the canary now (under the device lock), store the reading, compare with the baseline."""
        with device_lock(self.backend):
            before = snapshot()
            raw = self.backend.measure(CANARY, self.workload)
            others = None if self.backend.is_gpu else others_cpus(before, snapshot())
        s = summarize(list(raw.samples_ms))
        latency = raw.latency_ms  # the protocol's estimator (CPU v2: the minimum of window medians)
        self.store.add_canary({"scope_hash": self.scope_hash, "scope_json": canonical(self.scope),
                               "canary": CANARY_NAME, "median_ms": latency, "cov": s.cov,
                               "background_cpus": others, "context": context, "host": host(),
                               "measured_at": now_iso()})
        history = self.store.canary_history(self.scope_hash, CANARY_NAME)
        baseline = statistics.median(r["median_ms"] for r in history[:BASELINE_READINGS])
        self.last = CanaryReading(median_ms=latency, cov=s.cov, baseline_ms=baseline, readings=len(history),
                                  background_cpus=others)
        return self.last

    def details(self) -> dict[str, Any]:
        """What to store with a measurement taken now: the latest canary ratio (empty before any reading)."""
        if self.last is None:
            return {}
        return {"canary_ratio": round(self.last.ratio, 4), "canary": CANARY_NAME}

    def history(self) -> list[dict[str, Any]]:
        return [{**r, "scope_json": json.loads(r["scope_json"])}
                for r in self.store.canary_history(self.scope_hash, CANARY_NAME)]
