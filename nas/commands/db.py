"""``nas db stats|export|import|fit|verify``: inspect the latency database, pool it across machines, fit its
predictor, and check its rows against this machine now."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from nas.commands import COMMANDS, flags
from nas.commands.latency import open_db
from nas.commands.predict import add_fit_args, fit
from nas.errors import UsageError

if TYPE_CHECKING:
    from latency_db import LatencyStore


@COMMANDS.register("db")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="latency database: stats, export, import, fit, verify, agents",
                       description="Inspect the latency database, or move its rows to and from a CSV or "
                       "Parquet file so a team can pool measurements (import never overwrites a row).")
    actions = p.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    stats = actions.add_parser("stats", help="rows per device key (with its CPU flags), backend and protocol")
    flags.add_json(stats)
    export = actions.add_parser("export", help="write every row to FILE (.csv or .parquet)")
    export.add_argument("file", metavar="FILE")
    imp = actions.add_parser("import", help="add the rows of FILE (.csv or .parquet) that are not stored yet")
    imp.add_argument("file", metavar="FILE")
    agents = actions.add_parser("agents", help="the latency agents: device, last heartbeat, jobs done")
    flags.add_json(agents)
    for q in (stats, export, imp, agents):
        flags.add_latency_db(q)
        q.set_defaults(handler=run)
    fit = actions.add_parser("fit", help="fit and save the latency predictor of this device from its rows")
    add_fit_args(fit)
    fit.set_defaults(handler=run)
    ver = actions.add_parser("verify", help="re-time a sample of stored rows on this machine and compare",
                             description="Re-time up to N random stored rows this machine could answer (same "
                             "device key, backend, builder, protocol) and report each new/stored ratio, the "
                             "median ratio and the rows outside +-10 %%; --fix overwrites those rows with the "
                             "new measurement.")
    ver.add_argument("--sample", type=positive_int, default=20, metavar="N", help="rows to re-time (default 20)")
    ver.add_argument("--fix", action="store_true", help="overwrite the rows outside +-10 %% with the new timing")
    ver.add_argument("--seed", type=int, help="seed of the row sample (default: a fresh sample each run)")
    flags.add_json(ver)
    flags.add_latency_db(ver)
    ver.set_defaults(handler=run)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def print_verification(store: LatencyStore, args: argparse.Namespace) -> int:
    """``nas db verify``: re-time a sample and print the ratios."""
    from latency_db.verify import TOLERANCE, verify

    result = verify(store, args.sample, fix=args.fix, seed=args.seed)
    if args.json:
        print(json.dumps({"latency_db": store.display_url, "eligible": result.eligible,
                          "without_spec": result.without_spec, "median_ratio": result.median_ratio,
                          "repeat_agreement": result.repeat_agreement,
                          "outside": len(result.outside), "checked": [c.to_dict() for c in result.checked]}))
        return 0
    print(f"{store.display_url}: {result.eligible} rows answerable on this machine, {result.without_spec} of them "
          f"without a stored architecture; re-timed {len(result.checked)}")
    for c in result.checked:
        ratio = "failed" if c.ratio is None else f"{c.ratio:.3f}"
        mark = (" FIXED" if c.fixed else " OUTSIDE") if c.outside else ""
        new = "-" if c.new_ms is None else f"{c.new_ms:.3f}"
        print(f"  {ratio:>7}  stored {c.stored_ms:9.3f} ms  now {new:>9} ms  {c.backend} {c.protocol}  "
              f"{c.summary}{mark}")
    if result.median_ratio is not None:
        print(f"median ratio now/stored {result.median_ratio:.3f}; {len(result.outside)} of {len(result.checked)} "
              f"outside +-{100 * TOLERANCE:.0f} %" + (" (overwritten)" if args.fix and result.outside else ""))
    if result.repeat_agreement is not None:
        print(f"repeat agreement: {100 * result.repeat_agreement:.1f} % of the re-timed rows within "
              f"+-{100 * TOLERANCE:.0f} % of their stored latency")
    return 0


def print_agents(store: LatencyStore, as_json: bool) -> None:
    """``nas db agents``: every registered agent, live ones first, with its device, last beat and jobs."""
    from dataclasses import asdict

    from latency_db.jobs import JobQueue

    queue = JobQueue(store)
    now = queue.now()
    listed = sorted(queue.list_agents(), key=lambda a: (not a.live(now), a.name, -a.started_at))
    if as_json:
        print(json.dumps({"latency_db": store.display_url, "agents": [
            {**asdict(a), "live": a.live(now), "heartbeat_age_s": round(now - a.heartbeat_at, 1)} for a in listed]}))
        return
    print(f"{store.display_url}: {sum(a.live(now) for a in listed)} live agent(s), {len(listed)} registered")
    for a in listed:
        state = "live" if a.live(now) else ("stopped" if a.stopped_at is not None else "silent")
        print(f"  {a.name:<16} {state:<7} beat {now - a.heartbeat_at:7.1f} s ago  {a.jobs_done:>5} done "
              f"{a.jobs_failed:>4} failed  {a.backend} {a.protocol} on {a.device} ({a.host}, pid {a.pid})")


def run(args: argparse.Namespace) -> int:
    from latency_db import StoreError

    store = open_db(args.latency_db)
    try:
        if args.db_action == "stats":
            groups = store.stats()
            if args.json:
                print(json.dumps({"latency_db": store.display_url, "rows": store.count(), "groups": groups}))
                return 0
            print(f"{store.display_url}: {store.count()} rows")
            for g in groups:
                print(f"  {g['rows']:>6} rows  {g['errors']:>4} failed  {g['unstable']:>4} unstable  "
                      f"{g['backend']:<12} {g['protocol']:<16} {g['device']}")
                if g["legacy_cpu_key"]:
                    print("         legacy CPU key without ISA flags: kept, never answered to any machine")
                elif g["isa"] is not None:
                    print(f"         flags {' '.join(g['isa']) or '(none of the dispatch flags)'}")
        elif args.db_action == "agents":
            print_agents(store, args.json)
        elif args.db_action == "fit":
            return fit(args, store)
        elif args.db_action == "verify":
            return print_verification(store, args)
        elif args.db_action == "export":
            n = store.export(args.file)
            print(f"exported {n} rows to {args.file}")
        else:
            inserted, present = store.import_file(args.file)
            print(f"imported {inserted} rows from {args.file} ({present} already present)")
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{exc.filename or getattr(args, 'file', '')}: {exc.strerror or exc}") from None
    finally:
        store.close()
    return 0
