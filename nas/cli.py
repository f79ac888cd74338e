"""The ``nas`` command line: one subcommand per module in ``nas.commands``.

Command modules import nothing heavy at top level (torch, onnxruntime, optuna load inside the
handlers), so ``nas --help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from nas import __version__
from nas.errors import EXIT_RUNTIME, EXIT_USAGE, NasError

# Each module defines ``register(subparsers)``, which adds its parser and sets ``handler``.
COMMAND_MODULES = ("spaces", "search", "report", "latency", "predict", "db", "sweep", "export", "bench")


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr (exit 2), pointing at --help instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def user_error(exc: BaseException) -> bool:
    """Errors of search_spaces and latency_db whose text is written for the user (bad names, files)."""
    from latency_db import BackendError, StoreError
    from search_spaces import SpecError, UnknownSpaceError

    return isinstance(exc, (SpecError, UnknownSpaceError, BackendError, StoreError))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    except OSError as exc:  # a full disk, a folder that vanished: the environment, not a bug
        where = f": {exc.filename}" if exc.filename else ""
        print(f"nas {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_RUNTIME
    except Exception as exc:
        if not user_error(exc):
            raise
        print(f"nas {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
