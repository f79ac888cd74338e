"""How fast is it, on what: measure each untrained candidate once per device and software, remember it.

The search driver's entry points::

    backend = resolve_backend("auto")                      # or get_backend("onnxruntime", protocol="full")
    store = open_store(url)                                # None: $NAS_LATENCY_DB or the default SQLite file
    workload = workload_for(spec, 135, 240, backend.default_io_dtype)
    result = measure_or_get(spec, workload, backend, store)   # LatencyResult; result.error on failure
    with device_lock(backend) as lock: ...                 # hold while training; lock.waited_s

latency_db knows nothing of Optuna or training.
"""

from __future__ import annotations

from latency_db.backends import (
    BACKEND_NAMES,
    Backend,
    BackendError,
    BuildError,
    Protocol,
    RawMeasurement,
    get_backend,
    resolve_backend,
)
from latency_db.candidates import Candidate, ConvProbe, workload_for
from latency_db.engine import StoreError, make_engine, resolve_url
from latency_db.keys import LatencyKey, latency_key
from latency_db.lock import DeviceLock, device_lock
from latency_db.measure import LatencyResult, measure_or_get
from latency_db.roofline import Peak, device_peak, gpu_peak, roofline_ms
from latency_db.schema import SCHEMA_VERSION
from latency_db.store import LatencyStore, open_store
from latency_db.workload import Workload

__all__ = [
    "BACKEND_NAMES", "SCHEMA_VERSION", "Backend", "BackendError", "BuildError", "Candidate", "ConvProbe",
    "DeviceLock", "LatencyKey", "LatencyResult", "LatencyStore", "Peak", "Protocol", "RawMeasurement",
    "StoreError", "Workload", "device_lock", "device_peak", "get_backend", "gpu_peak", "latency_key",
    "make_engine", "measure_or_get", "open_store", "resolve_backend", "resolve_url", "roofline_ms",
    "workload_for",
]
