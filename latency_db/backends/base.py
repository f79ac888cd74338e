"""The backend interface, timing protocols and what every backend shares (ONNX export, host timing).

A backend turns (candidate, workload) into raw latency samples on one device. It knows its name,
whether it runs on a GPU, its default IO dtype, whether it can run here (``available``, cheap, no
heavy imports), the device/software fingerprint, and its builder settings: all of which key the
cache together with the protocol.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from latency_db.candidates import Candidate, build_module, workload_for
from latency_db.fingerprint import digest
from latency_db.spells import PROBE_SHAPE, SPELL_PROBE, SpellWatch, probe_window, watch_for
from latency_db.stats import percentile, summarize
from latency_db.windows import Visit, WindowPlan, estimate_ms, time_visit
from latency_db.workload import Workload
from search_spaces.errors import NasError


class BuildError(NasError, RuntimeError):
    """The candidate cannot be exported, built or loaded on this backend: a stable verdict, cached."""


@dataclass(frozen=True)
class Protocol:
    """How a latency is timed. ``name`` (with its version suffix) is part of the cache key: change
    any number here and bump the suffix.

    Stopping rule: with ``require_both`` timing runs until ``min_runs`` samples AND ``min_s``
    seconds (ONNX Runtime on CPU); without, until either is reached (trtexec-style GPU timing).
    ``max_s`` caps a slow candidate; ``max_runs`` caps a fast one. With ``windows`` (CPU, v2) timing is
    windowed instead (latency_db/windows.py) and the stopping rule is the window plan's.
    """

    name: str
    warmup_s: float
    min_warmup_runs: int
    min_runs: int
    min_s: float
    require_both: bool
    max_s: float
    max_runs: int
    cov_threshold: float
    windows: WindowPlan | None = None

    def enough(self, runs: int, elapsed_s: float) -> bool:
        if runs >= self.max_runs or elapsed_s >= self.max_s:
            return True
        if self.require_both:
            return runs >= self.min_runs and elapsed_s >= self.min_s
        return runs >= self.min_runs or elapsed_s >= self.min_s

    def planned_runs(self, seconds_per_run: float) -> int:
        """Sample count the stopping rule reaches for a run time estimated during warm-up."""
        by_time = int(self.min_s / max(seconds_per_run, 1e-9)) + 1
        n = max(self.min_runs, by_time) if self.require_both else min(self.min_runs, by_time)
        cap = int(self.max_s / max(seconds_per_run, 1e-9)) + 1
        return max(3, min(n, cap, self.max_runs))


@dataclass(frozen=True)
class RawMeasurement:
    """Samples of the attempt that was kept (the steadiest one) and what it cost to get them."""

    samples_ms: tuple[float, ...]
    build_s: float
    attempts: int
    unstable: bool
    details: dict[str, Any] = field(default_factory=dict)
    visits: tuple[Visit, ...] = ()     # windowed protocols: the visits timed (latency_db/windows.py)

    @property
    def latency_ms(self) -> float:
        """The protocol's latency: the windowed estimate over the visits, else the median of the samples."""
        return estimate_ms(self.visits) if self.visits else percentile(sorted(self.samples_ms), 50)


class Session(ABC):
    """A built, loaded candidate, ready to time; closed when done."""

    details: dict[str, Any]

    @abstractmethod
    def time(self, protocol: Protocol) -> list[float]:
        """One timed attempt: warm-up, then samples in milliseconds."""

    def close(self) -> None:  # noqa: B027  (a no-op by default: sessions that hold nothing need not override it)
        """Release what the session holds (engines, sessions, GPU memory)."""


class HostSession(Session):
    """A CPU session: one synchronous call is one run, timed on the host clock."""

    @abstractmethod
    def run_once(self) -> None:
        """Run the network once on the prepared input; returns when the output is ready."""

    def timing(self) -> AbstractContextManager[Any]:
        """Held while timing (e.g. the thread count a framework must run with); nothing by default."""
        return nullcontext()

    def time(self, protocol: Protocol) -> list[float]:
        with self.timing():
            return host_timing(self.run_once, protocol)

    def visit(self, protocol: Protocol, probe: Callable[[], float] | None = None,
              watch: SpellWatch | None = None) -> RawMeasurement:
        """One visit of a windowed protocol (CPU v2, v3 with the spell ``probe``); ``build_s`` is filled in by the
        caller."""
        if protocol.windows is None:
            raise ValueError(f"protocol {protocol.name} has no window plan")
        with self.timing():
            visit, samples = time_visit(self.run_once, protocol.windows, protocol.warmup_s, protocol.min_warmup_runs,
                                        probe=probe, watch=watch)
        return RawMeasurement(samples_ms=tuple(samples), build_s=0.0, attempts=1, unstable=False,
                              details=dict(self.details), visits=(visit,))


class Backend(ABC):
    """One way of running a network on one device."""

    name: ClassVar[str]
    is_gpu: ClassVar[bool]
    default_io_dtype: ClassVar[str]
    protocols: ClassVar[dict[str, Protocol]]
    quant_scheme: ClassVar[str] = "ort"   # the int8 QDQ recipe this backend's kernels take (search_spaces/onnx_quant)
    quantized: bool = False               # times the int8 QDQ graph (set by latency_db.precision.at_precision)

    def __init__(self, protocol: str = "fast") -> None:
        if protocol not in self.protocols:
            raise ValueError(f"backend {self.name} has no protocol {protocol!r} "
                             f"(choose from {', '.join(self.protocols)})")
        self.protocol = self.protocols[protocol]
        self._fingerprint: dict[str, Any] | None = None

    @classmethod
    @abstractmethod
    def available(cls) -> bool:
        """Whether this backend can run here; cheap, and imports nothing heavy it does not need."""

    @abstractmethod
    def version(self) -> str:
        """Exact version of the library that runs the network (e.g. '1.32.0')."""

    @abstractmethod
    def _device_fingerprint(self) -> dict[str, Any]:
        """{'device': short name, 'key': {...}, 'info': {...}} of the device this backend times on."""

    @abstractmethod
    def builder_settings(self, workload: Workload) -> dict[str, Any]:
        """Everything about how the graph is built that changes its speed (keyed)."""

    @abstractmethod
    def _open(self, spec: Candidate, workload: Workload) -> Session:
        """Export, build and load the candidate; raise BuildError when it cannot be built."""

    def fingerprint(self) -> dict[str, Any]:
        """Device and software fingerprint: 'device' (short name), 'key' (the device's keyed fields),
        'info' (stored only), 'backend' and 'backend_version' (keyed separately)."""
        if self._fingerprint is None:
            self._fingerprint = {**self._device_fingerprint(), "backend": self.name,
                                 "backend_version": self.version()}
        return self._fingerprint

    def precision(self, workload: Workload) -> str:
        """Compute precision: int8 for the quantized graph, else (the graph is strongly typed) the IO dtype."""
        return "int8" if self.quantized else workload.io_dtype

    def graph(self, spec: Candidate, workload: Workload) -> bytes:
        """The ONNX graph this backend times: the exported one, or its int8 QDQ form when ``quantized``."""
        return quantized_graph(spec, workload, self.quant_scheme) if self.quantized else export_graph(spec, workload)

    def lock_name(self) -> str:
        """Name of the device lock file: one per physical device, shared by its backends."""
        key = self.fingerprint()["key"]
        if key["kind"] == "gpu":
            return "gpu-" + (self.fingerprint()["info"].get("uuid") or "0")
        return "cpu"

    def open_session(self, spec: Candidate, workload: Workload) -> Session:
        """Export, build and load the candidate, ready to time (close it when done); BuildError when it cannot."""
        return self._open(spec, workload)

    def measure(self, spec: Candidate, workload: Workload) -> RawMeasurement:
        """Build once, time once. Windowed protocols (CPU v2) time one visit (``measure.refine`` adds the
        later ones). Others: when the CoV is above the protocol's threshold time once
        more and keep the steadier attempt, marking the result unstable if that one is still above it."""
        t0 = time.perf_counter()
        session = self._open(spec, workload)
        build_s = time.perf_counter() - t0
        if self.protocol.windows is not None and isinstance(session, HostSession):
            try:
                if self.protocol.windows.spell_tol is None:
                    return replace(session.visit(self.protocol), build_s=build_s)
                probe, watch = self.spell_probe()
                return replace(session.visit(self.protocol, probe, watch), build_s=build_s)
            finally:
                session.close()
        try:
            best = session.time(self.protocol)
            attempts = 1
            if summarize(best).cov > self.protocol.cov_threshold:
                again = session.time(self.protocol)
                attempts = 2
                if summarize(again).cov < summarize(best).cov:
                    best = again
            details = dict(session.details)
        finally:
            session.close()
        return RawMeasurement(samples_ms=tuple(best), build_s=build_s, attempts=attempts,
                              unstable=summarize(best).cov > self.protocol.cov_threshold, details=details)


    def spell_probe(self) -> tuple[Callable[[], float], SpellWatch]:
        """One reading of this backend's slow-spell probe (latency_db/spells.py; its session built once per process
        and kept), and the process's watch over its readings."""
        workload = workload_for(SPELL_PROBE, *PROBE_SHAPE, self.default_io_dtype)
        key = f"{self.name}/{self.quantized}/{digest(self.builder_settings(workload))}"
        if key not in _PROBES:
            session = self._open(SPELL_PROBE, workload)
            if not isinstance(session, HostSession):
                raise TypeError(f"backend {self.name} times on a device: it has no spell probe")
            _PROBES[key] = session
        session = _PROBES[key]

        def read() -> float:
            with session.timing():
                return probe_window(session.run_once)
        return read, watch_for(key)


_PROBES: dict[str, HostSession] = {}  # spell probe sessions, one per backend setting, for the process's life

GRAPH_CACHE = 32  # exported graphs kept in memory, newest first out last
_GRAPHS: OrderedDict[tuple[str, Workload], bytes] = OrderedDict()


def export_graph(spec: Candidate, workload: Workload) -> bytes:
    """ONNX bytes of the candidate at the workload's fixed shape and IO dtype (search_spaces' exporter;
    the input channel count comes from the workload so conv probes export too). An fp16 workload gives
    a true fp16 graph (weights, inputs, outputs), as TensorRT 11's strong typing needs."""
    from latency_db.graph import OnnxGraph
    from search_spaces.onnx_export import graph_bytes

    if isinstance(spec, OnnxGraph):  # a user's graph is timed as it is, at the workload's shape
        return spec.fixed(workload.shape)
    key = (spec.arch_id, workload)
    if key in _GRAPHS:  # a later visit of the same candidate (windowed protocols): no second export
        _GRAPHS.move_to_end(key)
        return _GRAPHS[key]
    try:
        graph = graph_bytes(build_module(spec), workload.shape, fp16=workload.io_dtype == "fp16", check=False)
    except Exception as exc:  # the exporter raises many types; all mean "cannot export"
        raise BuildError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    _GRAPHS[key] = graph
    while len(_GRAPHS) > GRAPH_CACHE:
        _GRAPHS.popitem(last=False)
    return graph


CALIBRATION_INPUTS = 4  # random frames calibrate a graph that is only timed: its scales do not change its speed


def quantized_graph(spec: Candidate, workload: Workload, scheme: str) -> bytes:
    """The int8 QDQ graph of the candidate for timing (search_spaces/onnx_quant.py), calibrated on seeded random
    frames (the training's int8 graph is calibrated on training patches; the kernels are the same)."""
    import numpy as np

    from search_spaces.onnx_quant import QuantizeError, quantize_graph

    key = (spec.arch_id + "/int8-" + scheme, workload)
    if key in _GRAPHS:
        _GRAPHS.move_to_end(key)
        return _GRAPHS[key]
    rng = np.random.default_rng(0)
    frames = [rng.random(workload.shape, dtype=np.float32) for _ in range(CALIBRATION_INPUTS)]
    try:
        graph = quantize_graph(export_graph(spec, replace(workload, io_dtype="fp32")), frames, scheme)
    except QuantizeError as exc:
        raise BuildError(str(exc)) from exc
    _GRAPHS[key] = graph
    while len(_GRAPHS) > GRAPH_CACHE:
        _GRAPHS.popitem(last=False)
    return graph


def host_timing(run: Callable[[], Any], protocol: Protocol) -> list[float]:
    """Time ``run`` on the host clock: discard warm-up runs (>= ``warmup_s`` and >= ``min_warmup_runs``),
    then sample until the protocol's stopping rule holds. For CPU backends, where a call is synchronous."""
    clock = time.perf_counter
    start, n = clock(), 0
    while n < protocol.min_warmup_runs or clock() - start < protocol.warmup_s:
        run()
        n += 1
    samples: list[float] = []
    start = clock()
    while not protocol.enough(len(samples), clock() - start):
        t = clock()
        run()
        samples.append((clock() - t) * 1e3)
    return samples
