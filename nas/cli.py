"""The ``nas`` command line: one subcommand per module in ``nas.commands``.

Command modules import nothing heavy at top level (torch, onnxruntime, optuna load inside the
handlers), so ``nas --help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nas import __version__
from nas.errors import EXIT_USAGE, NasError

# Each module defines ``register(subparsers)``, which adds its parser and sets ``handler``.
COMMAND_MODULES = ("spaces", "search", "report", "latency", "db", "sweep", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas",
        description="Hardware-aware neural architecture search for real-time visual networks: "
        "find the best network that fits a per-frame latency budget on your device.",
    )
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"nas.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except NasError as exc:
        print(f"nas {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:  # SpecError, UnknownSpaceError and friends carry user-facing text
        from search_spaces import SpecError, UnknownSpaceError

        if isinstance(exc, (SpecError, UnknownSpaceError)):
            print(f"nas {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
