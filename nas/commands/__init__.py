"""Subcommands of the ``nas`` CLI, one module each, registered in ``COMMANDS`` in help order.

Command modules import nothing heavy at top level (torch, onnxruntime, optuna load inside the
handlers), so ``nas --help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from search_spaces.registry import Registry

# name -> register(subparsers): adds the command's parser and sets its ``handler``
COMMANDS: Registry[Callable[[argparse._SubParsersAction], None]] = Registry("command")

# imported in the order ``nas --help`` lists them: each module registers itself
from nas.commands import spaces, search, report, latency, predict, db, agent, sweep, export, bench  # noqa: E402, F401, I001
