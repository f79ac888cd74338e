"""One lock per device, so timing never overlaps another measurement or training on that device.

``device_lock(backend)`` is a file lock in the cache dir (``locks/<device>.lock``), shared by all
processes on the machine. It is reentrant within a thread: the search driver may hold it while
training and call measure_or_get inside it. ``waited_s`` says how long the last acquire waited.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from filelock import FileLock

from latency_db.paths import cache_dir

if TYPE_CHECKING:
    from latency_db.backends import Backend

_LOCKS: dict[Path, FileLock] = {}  # one FileLock object per path: reentrant in-process
_LOCKS_GUARD = threading.Lock()


class DeviceLock:
    """Context manager over the device's file lock; ``waited_s`` is set on entry."""

    def __init__(self, name: str, timeout: float = -1) -> None:
        folder = cache_dir() / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.lock"
        self.timeout = timeout
        self.waited_s = 0.0
        with _LOCKS_GUARD:
            self._lock = _LOCKS.setdefault(self.path, FileLock(str(self.path)))

    def __enter__(self) -> DeviceLock:
        t = time.perf_counter()
        self._lock.acquire(timeout=self.timeout)
        self.waited_s = time.perf_counter() - t
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._lock.release()


def device_lock(backend: Backend, timeout: float = -1) -> DeviceLock:
    """The lock of the device ``backend`` times on (all CPU backends share one); ``timeout`` < 0 waits."""
    return DeviceLock(backend.lock_name(), timeout)
