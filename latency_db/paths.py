"""Where latency_db keeps its files: the default database, device lock files, TensorRT timing caches."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "NAS_CACHE_DIR"


def cache_dir() -> Path:
    """``$NAS_CACHE_DIR`` when set (tests, shared team caches), else platformdirs' user cache dir."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        path = Path(override)
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("nas"))
    path.mkdir(parents=True, exist_ok=True)
    return path
