"""``nas db stats|export|import|fit``: inspect the latency database, pool it across machines, fit its predictor."""

from __future__ import annotations

import argparse
import json

from nas.commands.latency import add_db_arg, open_db
from nas.commands.predict import add_fit_args, fit
from nas.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="latency database: stats, export, import, fit",
                       description="Inspect the latency database, or move its rows to and from a CSV or "
                       "Parquet file so a team can pool measurements (import never overwrites a row).")
    actions = p.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    stats = actions.add_parser("stats", help="rows per device key (with its CPU flags), backend and protocol")
    stats.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    export = actions.add_parser("export", help="write every row to FILE (.csv or .parquet)")
    export.add_argument("file", metavar="FILE")
    imp = actions.add_parser("import", help="add the rows of FILE (.csv or .parquet) that are not stored yet")
    imp.add_argument("file", metavar="FILE")
    for q in (stats, export, imp):
        add_db_arg(q)
        q.set_defaults(handler=run)
    fit = actions.add_parser("fit", help="fit and save the latency predictor of this device from its rows")
    add_fit_args(fit)
    fit.set_defaults(handler=run)


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
        elif args.db_action == "fit":
            return fit(args, store)
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
