"""``nas predict ARCH_JSON`` and ``nas db fit``: the learned latency predictor of this device."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from nas.commands import COMMANDS
from nas.commands.latency import add_device_args, backend_from_args, input_size_from_args, open_db
from nas.errors import NasError

if TYPE_CHECKING:
    from latency_db import Backend, LatencyStore, Workload
    from latency_db.predictor import Predictor


class NoPredictorError(NasError):
    """Too few measured rows for this device, backend, protocol and workload (exit 1: measure first)."""


@COMMANDS.register("predict")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict one architecture's latency from the latency database",
                       description="Latency of the network in ARCH_JSON predicted by a model fitted on the "
                       "latency database's rows for this device, backend, protocol and input size (fitted "
                       "now when the database has new rows; nothing is measured).")
    p.add_argument("arch_json", metavar="ARCH_JSON", help="an arch.json file (as written in a run dir)")
    add_device_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=run)


def add_fit_args(p: argparse.ArgumentParser) -> None:
    """``nas db fit``'s flags: which workload to fit for (the task gives the scale)."""
    add_device_args(p)
    p.add_argument("--task", default="sr2x", help="task whose networks to fit on (default sr2x)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def get_predictor(store: LatencyStore, backend: Backend, workload: Workload, refit: bool = False) -> Predictor:
    """The predictor for this scope; too few rows is a one-line error."""
    from latency_db.predictor import PredictorError, predictor_for

    try:
        return predictor_for(store, backend, workload, refit=refit)
    except PredictorError as exc:
        raise NoPredictorError(f"no latency predictor for {backend.name} {backend.protocol.name} on "
                               f"{backend.fingerprint()['device']} at {workload.height}x{workload.width}: {exc}") from None


def describe(pred: Predictor) -> str:
    return (f"fitted on {pred.n_rows} rows; cross-validated: {100 * pred.cv_within_10:.1f} % within +-10 %, "
            f"p99 error {100 * pred.p99_rel_error:.1f} %, Kendall {pred.cv_kendall:.3f}; "
            f"screens by default: {'yes' if pred.screens else 'no'}")


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
