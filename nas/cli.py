"""The ``nas`` command line: one subcommand per module in ``nas.commands``.

Command modules import nothing heavy at top level (torch, onnxruntime, optuna load inside the
handlers), so ``nas --help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from nas import __version__
from nas.errors import EXIT_RUNTIME, EXIT_USAGE, NasError


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr (exit 2), pointing at --help instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line(exc: BaseException) -> str:
    """An error's message as one line (a wrapped library message may hold newlines)."""
    return " ".join(str(exc).split())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="nas",
        description="Hardware-aware neural architecture search for real-time visual networks: "
        "find the best network that fits a per-frame latency budget on your device.",
    )
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from nas.commands import COMMANDS

    for register in COMMANDS.values():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except NasError as exc:  # the one root of nas, latency_db and search_spaces errors (search_spaces/errors.py)
        print(f"nas {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a full disk, a folder that vanished: the environment, not a bug
        where = f": {exc.filename}" if exc.filename else ""
        print(f"nas {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
