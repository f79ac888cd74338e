"""``nas predict ARCH_JSON`` and ``nas db fit``: the learned latency predictor of this device."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from nas.commands import COMMANDS, flags
from nas.commands.latency import add_device_args, backend_from_args, input_size_from_args, open_db
from nas.search.latency_guard import describe, get_predictor

if TYPE_CHECKING:
    from latency_db import LatencyStore


@COMMANDS.register("predict")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict one architecture's latency from the latency database",
                       description="Latency of the network in ARCH_JSON predicted by a model fitted on the "
                       "latency database's rows for this device, backend, protocol and input size (fitted "
                       "now when the database has new rows; nothing is measured).")
    p.add_argument("arch_json", metavar="ARCH_JSON", help="an arch.json file (as written in a run dir)")
    add_device_args(p)
    flags.add_json(p)
    p.set_defaults(handler=run)


def add_fit_args(p: argparse.ArgumentParser) -> None:
    """``nas db fit``'s flags: which workload to fit for (the task gives the scale)."""
    add_device_args(p)
    flags.add_task(p, what="task whose networks to fit on")
    flags.add_json(p)


def fit(args: argparse.Namespace, store: LatencyStore) -> int:
    """``nas db fit``: fit (always anew) and save the predictor of this device for the task's workload."""
    from latency_db import Workload
    from search_spaces import get_space

    space = get_space(args.task)
    backend = backend_from_args(args)
    h, w = input_size_from_args(args, backend)
    workload = Workload(height=h, width=w, scale=space.scale, channels=3, io_dtype=backend.default_io_dtype)
    pred = get_predictor(store, backend, workload, refit=True)
    if args.json:
        print(json.dumps({"latency_db": store.display_url, **pred.summary()}))
    else:
        print(f"{backend.name} {backend.protocol.name} on {backend.fingerprint()['device']}, {h}x{w}: "
              f"{describe(pred)}")
    return 0


def run(args: argparse.Namespace) -> int:
    from latency_db import workload_for
    from search_spaces import load_spec

    spec = load_spec(args.arch_json)
    backend = backend_from_args(args)
    h, w = input_size_from_args(args, backend)
    workload = workload_for(spec, h, w, backend.default_io_dtype)
    store = open_db(args.latency_db)
    try:
        pred = get_predictor(store, backend, workload)
    finally:
        store.close()
    ms = pred.predict(spec, workload)
    out: dict[str, Any] = {"arch_id": spec.arch_id, "predicted_ms": ms, "backend": backend.name,
                           "device": backend.fingerprint()["device"], "workload": workload.to_dict(),
                           "predictor": {k: v for k, v in pred.summary().items() if k != "scope"}}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{spec.summary()}\n  arch_id {spec.arch_id}")
    print(f"  predicted {ms:.3f} ms (99 % of cross-validated predictions within +-{100 * pred.p99_rel_error:.0f} %)")
    print(f"  {backend.name} on {backend.fingerprint()['device']}, {h}x{w} {workload.io_dtype}, "
          f"protocol {backend.protocol.name}; {describe(pred)}")
    return 0
