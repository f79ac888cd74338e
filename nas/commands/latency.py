"""``nas latency ARCH_JSON``: the latency of one architecture on this device, measured or cached."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from nas.commands import COMMANDS, flags
from nas.errors import EXIT_RUNTIME, UsageError

if TYPE_CHECKING:
    from latency_db import Backend, LatencyStore

def add_device_args(p: argparse.ArgumentParser) -> None:
    """The flags every measuring command shares."""
    flags.add_backend(p)
    flags.add_input_size(p)
    flags.add_protocol(p)
    flags.add_latency_db(p)


def precisions_from_args(args: argparse.Namespace, backend: Backend) -> tuple[str, ...]:
    """--precision checked against the backend (one line, exit 2); the backend's own precision when not given."""
    from latency_db.precision import check_offered, default_precision, parse_precisions

    if getattr(args, "precision", None) is None:
        return (default_precision(backend),)
    precisions = parse_precisions(args.precision)
    check_offered(backend.name, precisions)
    return precisions


def open_db(url: str | None) -> LatencyStore:
    """Open the latency store; a bad URL or file is the user's to fix (exit 2)."""
    from latency_db import StoreError, open_store

    try:
        return open_store(url)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def backend_from_args(args: argparse.Namespace) -> Backend:
    from latency_db import BackendError, resolve_backend

    try:
        backend = resolve_backend(args.backend, protocol=args.protocol)
    except BackendError as exc:
        raise UsageError(str(exc)) from None
    if args.backend == "auto" and not getattr(args, "json", False):
        print(f"backend auto -> {backend.name}", file=sys.stderr)
    return backend


def input_size_from_args(args: argparse.Namespace, backend: Backend) -> tuple[int, int]:
    from nas.target import default_input_size, parse_input_size

    if args.input_size is None:
        return default_input_size(backend.is_gpu)
    return parse_input_size(args.input_size)


@COMMANDS.register("latency")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="measure (or look up) one architecture's latency",
                       description="Latency of the network in ARCH_JSON on this device: answered from the "
                       "latency database when this exact (network, input, backend, device, protocol) was "
                       "measured before, else measured now and stored.")
    p.add_argument("arch_json", metavar="ARCH_JSON", help="an arch.json file (as written in a run dir)")
    add_device_args(p)
    flags.add_precision(p)
    flags.add_json(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from latency_db import workload_for
    from search_spaces import load_spec

    spec = load_spec(args.arch_json)
    backend = backend_from_args(args)
    precisions = precisions_from_args(args, backend)
    h, w = input_size_from_args(args, backend)
    workload = workload_for(spec, h, w, backend.default_io_dtype)
    store = open_db(args.latency_db)
    try:
        codes = [run_one(args, spec, backend, workload, precision, store) for precision in precisions]
    finally:
        store.close()
    return max(codes)


def run_one(args: argparse.Namespace, spec: Any, backend: Backend, workload: Any, precision: str,
            store: LatencyStore) -> int:
    """Measure (or look up) ``spec`` at one precision and print it; the exit code."""
    from latency_db import measure_or_get
    from latency_db.precision import at_precision

    backend, workload = at_precision(backend, workload, precision)
    h, w = workload.height, workload.width
    try:
        result = measure_or_get(spec, workload, backend, store)
    except ValueError as exc:  # the input size does not tile this spec
        raise UsageError(str(exc)) from None
    out: dict[str, Any] = {"arch_id": result.arch_id, "latency_ms": result.median_ms, "p90_ms": result.p90_ms,
                           "cached": result.cached, "backend": result.backend, "device": result.device,
                           "summary": spec.summary(), "workload": workload.to_dict(), "precision": precision,
                           "latency_db": store.display_url, **result.to_dict()}
    if args.json:
        print(json.dumps(out))
        return EXIT_RUNTIME if result.error else 0
    print(f"{spec.summary()}\n  arch_id {result.arch_id}")
    where = f"{result.backend} {result.backend_version} on {result.device}, {h}x{w} {precision}"
    if result.error:
        print(f"  FAILED ({'cached failure' if result.cached else 'measured now'}) on {where}: {result.error}")
        return EXIT_RUNTIME
    print(f"  {result.median_ms:.3f} ms median  (p10 {result.p10_ms:.3f}, p90 {result.p90_ms:.3f}, "
          f"p99 {result.p99_ms:.3f}; CoV {100 * result.cov:.1f}%, {result.n_samples} samples"
          f"{', UNSTABLE' if result.unstable else ''})")
    if result.roofline_ms is not None:
        print(f"  roofline lower bound {result.roofline_ms:.3f} ms")
    if result.contended:
        print(f"  warning: other processes used {result.background_cpus:.1f} CPUs while this was timed: "
              "the number is likely too high; re-measure on a quiet machine (a fresh --latency-db)")
    print(f"  {where}, protocol {result.protocol}")
    if result.cached:
        print(f"  cached: answered from {store.display_url} in {1e3 * result.measure_s:.1f} ms "
              f"(measured {result.measured_at} on {result.host})")
    else:
        print(f"  measured now in {result.measure_s:.2f} s (build {result.build_s:.2f} s), "
              f"stored in {store.display_url}")
    return 0
