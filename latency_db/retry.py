"""Retries for a database that went away for a moment (a PostgreSQL restart, a dropped connection).

A worker of a long search must ride out a database restart: each call that talks to the database
is retried with exponential backoff while the error is a lost or refused connection, never for an
error in the request itself. Only the outermost call of a nest retries, so waits do not multiply.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

ATTEMPTS = 8          # 0.5 + 1 + 2 + 4 + 8 + 8 + 8 s: about half a minute of outage is ridden out
FIRST_DELAY_S, MAX_DELAY_S = 0.5, 8.0
_state = threading.local()


def is_transient(exc: BaseException) -> bool:
    """A lost, refused or reset connection (anywhere in the exception's cause chain)."""
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, PendingRollbackError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (OperationalError, InterfaceError, DisconnectionError, PendingRollbackError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_transient(fn: F) -> F:
    """Decorator: call ``fn`` again after a transient database error, backing off, up to ATTEMPTS times."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_state, "active", False):
            return fn(*args, **kwargs)
        _state.active = True
        try:
            delay = FIRST_DELAY_S
            for attempt in range(ATTEMPTS):
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    if attempt == ATTEMPTS - 1 or not is_transient(exc):
                        raise
                    time.sleep(delay)
                    delay = min(2 * delay, MAX_DELAY_S)
        finally:
            _state.active = False
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]
