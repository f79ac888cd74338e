"""Re-time a sample of stored rows on this machine: is the database still true here?

Only rows this machine could have answered (same device key, backend and version, builder,
protocol) whose architecture is stored are eligible. Each is measured afresh (never from the
cache; windowed protocols visit the sample in interleaved rounds until each new row is settled)
and compared with its stored latency (the share within +-TOLERANCE is the repeat agreement);
``fix`` overwrites the rows outside the tolerance with the new measurement.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass
from typing import Any

from latency_db.backends import Backend, get_backend
from latency_db.fingerprint import canonical
from latency_db.keys import LatencyKey
from latency_db.lock import device_lock
from latency_db.measure import is_settled, measure_row, next_visit
from latency_db.store import LatencyStore
from search_spaces import ArchSpec

TOLERANCE = 0.10


@dataclass(frozen=True)
class Checked:
    """One re-timed row: stored and new median, their ratio (new / stored), and whether it was fixed."""

    arch_id: str
    summary: str
    backend: str
    protocol: str
    stored_ms: float
    new_ms: float | None
    error: str | None
    background_cpus: float | None
    fixed: bool

    @property
    def ratio(self) -> float | None:
        return None if self.new_ms is None else self.new_ms / self.stored_ms

    @property
    def outside(self) -> bool:
        return self.ratio is not None and abs(self.ratio - 1.0) > TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ratio": self.ratio, "outside": self.outside}


@dataclass(frozen=True)
class Verification:
    checked: list[Checked]
    eligible: int          # rows this machine could have answered
    without_spec: int      # of which no architecture is stored (cannot be re-timed)

    @property
    def median_ratio(self) -> float | None:
        ratios = [c.ratio for c in self.checked if c.ratio is not None]
        return statistics.median(ratios) if ratios else None

    @property
    def outside(self) -> list[Checked]:
        return [c for c in self.checked if c.outside]

    @property
    def repeat_agreement(self) -> float | None:
        """The share of re-timed rows whose new latency is within +-TOLERANCE of the stored one."""
        timed = [c for c in self.checked if c.ratio is not None]
        return None if not timed else sum(not c.outside for c in timed) / len(timed)


def _backend_for(row: dict[str, Any], cache: dict[tuple[str, str], Backend | None]) -> Backend | None:
    """This machine's backend instance that keys rows as ``row`` was keyed, or None."""
    name, protocol = row["backend"], row["protocol"]
    if (name, protocol) not in cache:
        backend = None
        try:
            cls_protocols = get_backend(name).protocols
            short = next((k for k, p in cls_protocols.items() if p.name == protocol), None)
            candidate = get_backend(name, protocol=short) if short else None
            if candidate is not None and candidate.available():
                backend = candidate
        except (ValueError, ImportError):
            backend = None
        cache[(name, protocol)] = backend
    return cache[(name, protocol)]


def _answerable(row: dict[str, Any], key: LatencyKey, backend: Backend) -> bool:
    fp = backend.fingerprint()
    return (key.device == canonical(fp["key"]) and key.backend_version == fp["backend_version"]
            and key.builder == canonical(backend.builder_settings(key.workload)))


def verify(store: LatencyStore, sample: int, fix: bool = False, seed: int | None = None) -> Verification:
    """Re-time up to ``sample`` random eligible rows; with ``fix`` overwrite those outside +-TOLERANCE."""
    backends: dict[tuple[str, str], Backend | None] = {}
    eligible: list[tuple[dict[str, Any], LatencyKey, Backend]] = []
    for row in store.rows_where(status="ok"):
        backend = _backend_for(row, backends)
        key = LatencyKey.from_json(row["key_json"])
        if backend is not None and row["median_ms"] and _answerable(row, key, backend):
            eligible.append((row, key, backend))
    specs = store.specs([r["arch_id"] for r, _, _ in eligible]) if eligible else {}
    with_spec = [e for e in eligible if e[0]["arch_id"] in specs]
    picked = random.Random(seed).sample(with_spec, min(sample, len(with_spec)))
    fresh = []
    for row, key, backend in picked:
        spec = ArchSpec.from_json(specs[row["arch_id"]])
        with device_lock(backend):
            new, _cacheable = measure_row(spec, key.workload, backend, store)
        fresh.append((spec, new))
    for _ in range(max((b.protocol.windows.visits for _, _, b in picked if b.protocol.windows), default=0)):
        for i, (_row, key, backend) in enumerate(picked):  # windowed protocols: visits in rounds until settled
            spec, new = fresh[i]
            if backend.protocol.windows is not None and not is_settled(new):
                fresh[i] = (spec, next_visit(new, spec, key.workload, backend, store)[0])
    checked = []
    for (row, _key, _backend), (_spec, new) in zip(picked, fresh):
        others = json.loads(new["details_json"]).get("background_cpus")
        c = Checked(arch_id=row["arch_id"], summary=row["summary"] or "", backend=row["backend"],
                    protocol=row["protocol"], stored_ms=float(row["median_ms"]), new_ms=new["median_ms"],
                    error=new["error"], background_cpus=others, fixed=False)
        if fix and c.outside:
            store.replace(row["key_hash"], new)
            c = Checked(**{**c.__dict__, "fixed": True})
        checked.append(c)
    return Verification(checked=checked, eligible=len(eligible), without_spec=len(eligible) - len(with_spec))
