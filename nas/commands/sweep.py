"""``nas sweep``: where the latency steps and cliffs lie on this device as conv width grows."""

from __future__ import annotations

import argparse
import json
import sys

from nas.commands import COMMANDS, flags
from nas.commands.latency import add_device_args, backend_from_args, input_size_from_args, open_db
from nas.errors import UsageError


def _channels(text: str) -> range:
    try:
        lo, hi, step = (int(p) for p in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"channels must look like MIN:MAX:STEP (e.g. 8:256:8), got {text!r}") from None
    if not (0 < lo <= hi and step > 0):
        raise argparse.ArgumentTypeError(f"channels need 0 < MIN <= MAX and STEP > 0, got {text!r}")
    return range(lo, hi + 1, step)


@COMMANDS.register("sweep")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="latency of a conv layer and a 3-layer block as channels grow",
                       description="Measure one CxC conv layer and a 3-layer block of them for C in MIN..MAX "
                       "(default 8..256 step 8) at the input size on the chosen backend; every point is "
                       "stored in the latency database, and the chart is written as one HTML file.")
    add_device_args(p)
    p.add_argument("--channels", type=_channels, default=range(8, 257, 8), metavar="MIN:MAX:STEP",
                   help="channel counts to sweep (default 8:256:8)")
    p.add_argument("--kernel", type=int, choices=(1, 3, 5), default=3, help="conv kernel size (default 3)")
    p.add_argument("--out", default="sweep.html", metavar="FILE.html", help="chart file (default sweep.html)")
    flags.add_json(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from latency_db.sweep import run_sweep, sweep_figure

    backend = backend_from_args(args)
    h, w = input_size_from_args(args, backend)
    store = open_db(args.latency_db)

    def progress(row: dict) -> None:
        if args.json:
            return
        ms = "failed: " + row["error"] if row["error"] else f"{row['median_ms']:9.3f} ms  {row['gflops']:7.1f} GFLOP/s"
        print(f"  {row['layers']} layer(s) C={row['channels']:<4} {ms}{'  (cached)' if row['cached'] else ''}",
              file=sys.stderr, flush=True)

    try:
        rows = run_sweep(backend, store, h, w, args.channels, args.kernel, progress)
    finally:
        store.close()
    device = backend.fingerprint()["device"]
    title = (f"conv {args.kernel}x{args.kernel} sweep at {h}x{w}, {backend.name} {backend.version()} on {device} "
             f"(protocol {backend.protocol.name})")
    try:
        sweep_figure(rows, title).write_html(args.out, include_plotlyjs=True)
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps({"backend": backend.name, "device": device, "input_size": [h, w], "kernel": args.kernel,
                          "protocol": backend.protocol.name, "chart": args.out, "points": rows}))
    else:
        print(f"chart written to {args.out}")
    return 0
