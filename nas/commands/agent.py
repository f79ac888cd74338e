"""``nas agent --name NAME --latency-db URL``: measure, on this device, the latency jobs searches queue for NAME."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

from nas.commands import COMMANDS, flags
from nas.errors import UsageError

if TYPE_CHECKING:
    from latency_db import Backend


@COMMANDS.register("agent")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agent", help="measure latency jobs for searches running elsewhere (run it on the target device)",
        description="Register this machine as a latency agent named NAME in the shared latency database, then "
        "claim and measure the jobs that `nas search --target NAME` queues, with the same code path as a local "
        "measurement (rows keyed by this device). Only outbound database connections are made. SIGTERM or "
        "Ctrl-C finishes the job in hand, deregisters and exits 0 (docs/agents.md).")
    p.add_argument("--name", type=flags.agent_name, required=True,
                   help="the target name searches use (--target NAME); several agents may share one")
    flags.add_latency_db(p, note="; a shared PostgreSQL URL across machines")
    flags.add_backend(p)
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU backends: threads to time with (default: the physical cores); part of the device key")
    flags.add_protocol(p)
    p.set_defaults(handler=run)


def agent_backend(name: str, protocol: str, threads: int | None) -> Backend:
    """The backend this agent times with; --threads only where the backend runs on the CPU."""
    from latency_db import BackendError, get_backend, resolve_backend

    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be a positive integer, got {threads}")
    try:
        backend = resolve_backend(name, protocol=protocol)
        if threads is not None:
            if backend.is_gpu:
                raise UsageError(f"--threads applies to CPU backends, not {backend.name}")
            backend = get_backend(backend.name, protocol=protocol, threads=threads)
    except BackendError as exc:
        raise UsageError(str(exc)) from None
    return backend


def run(args: argparse.Namespace) -> int:
    from latency_db.agent import LatencyAgent
    from latency_db.jobs import agent_timing
    from nas.commands.latency import open_db
    from nas.target import LOCAL_TARGET

    if args.name == LOCAL_TARGET:
        raise UsageError(f"--name {LOCAL_TARGET} is reserved: `nas search --target {LOCAL_TARGET}` "
                         "means the searching machine itself")
    interval_s, lease_s = agent_timing()
    backend = agent_backend(args.backend, args.protocol, args.threads)
    store = open_db(args.latency_db)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if not stop.is_set():
            say(f"{signal.Signals(signum).name}: finishing the job in hand, then deregistering")
        stop.set()

    def say(message: str) -> None:
        print(f"nas agent: {message}", file=sys.stderr, flush=True)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        LatencyAgent(args.name, store, backend, interval_s, lease_s, say).run(stop)
    finally:
        store.close()
    return 0
