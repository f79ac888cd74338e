"""Errors the CLI turns into one clear line and an exit code (1 runtime, 2 usage or input, 3 no net fits)."""

from __future__ import annotations

EXIT_RUNTIME, EXIT_USAGE, EXIT_NO_FEASIBLE = 1, 2, 3


class NasError(Exception):
    """A failure with a message fit for the user; ``exit_code`` says which kind."""

    exit_code = EXIT_RUNTIME


class UsageError(NasError):
    """Bad flags or bad input files: nothing was changed."""

    exit_code = EXIT_USAGE


class NoFeasibleError(NasError):
    """No architecture met the latency budget."""

    exit_code = EXIT_NO_FEASIBLE
