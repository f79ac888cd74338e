"""Errors the CLI turns into one clear line and an exit code (1 runtime, 2 usage or input, 3 no net fits).

The root and the usage error come from search_spaces/errors.py, shared by all three packages.
"""

from __future__ import annotations

from search_spaces.errors import EXIT_NO_FEASIBLE, EXIT_RUNTIME, EXIT_USAGE, NasError, UsageError

__all__ = ["EXIT_NO_FEASIBLE", "EXIT_RUNTIME", "EXIT_USAGE", "NasError", "NoFeasibleError", "UsageError"]


class NoFeasibleError(NasError):
    """No architecture met the latency budget."""

    exit_code = EXIT_NO_FEASIBLE
