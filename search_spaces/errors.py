"""The one exception root of nas, latency_db and search_spaces (docs/architecture.md, "Errors").

It lives in the lowest package so that every package derives from it without importing upward. A
``NasError``'s message is written for the user, one line; ``exit_code`` says which kind it is, and
the CLI catches this root alone. Subclasses keep a builtin base where callers catch that builtin.
"""

from __future__ import annotations

EXIT_RUNTIME, EXIT_USAGE, EXIT_NO_FEASIBLE = 1, 2, 3


class NasError(Exception):
    """A failure with a message fit for the user; ``exit_code`` says which kind."""

    exit_code = EXIT_RUNTIME


class UsageError(NasError):
    """Bad flags or bad input files: nothing was changed."""

    exit_code = EXIT_USAGE
