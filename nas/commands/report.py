"""``nas report RUN_DIR``: write the run's self-contained HTML Pareto report (and optionally a PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.commands import COMMANDS


@COMMANDS.register("report")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the interactive Pareto report of a search run",
                       description="Write RUN_DIR/report.html: one self-contained HTML file (plotly.js "
                       "inline, opens offline) with the Pareto chart, search progress, latency against "
                       "MACs, the top candidates and validation crops of the winner.")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the --run-dir of a nas search")
    p.add_argument("--png", action="store_true",
                   help="also write RUN_DIR/pareto.png (needs kaleido and Chrome/Chromium; "
                   "without them a warning is printed and only the HTML is written)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nas.report import write_report

    print(write_report(args.run_dir, png=args.png))
    return 0
