"""Optuna storage from a URL: a journal file by default, PostgreSQL (RDB with heartbeats) to scale out.

SQLite is not meant for several writers, so local multi-process runs use Optuna's JournalStorage
file backend; machines share a study through PostgreSQL, where heartbeats let a worker that died
have its trial retried by another.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nas.errors import UsageError

HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30
MAX_RETRY = 2


def mask_url(url: str | None) -> str | None:
    """Hide the password of a database URL (for messages, logs and run.json)."""
    if url is None:
        return None
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_optuna_storage(url: str | None, default_journal: Path) -> Any:
    """``None`` or a file path (or ``journal:PATH``): journal file; ``postgresql://...``: RDB storage."""
    from optuna.storages import JournalStorage, RDBStorage, RetryFailedTrialCallback
    from optuna.storages.journal import JournalFileBackend

    if url is None or url.startswith("journal:") or "://" not in url:
        path = Path(url.removeprefix("journal:")) if url else default_journal
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise UsageError(f"cannot open the study journal {path}: {exc.strerror or exc}") from None
    if url.startswith("sqlite"):
        raise UsageError("--storage sqlite:// is not safe for several workers: use a journal file "
                         "(--storage journal:PATH) on one machine or postgresql://... across machines")
    try:
        return RDBStorage(
            url, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S,
            failed_trial_callback=RetryFailedTrialCallback(max_retry=MAX_RETRY),
            engine_kwargs={"pool_pre_ping": True},
        )
    except Exception as exc:  # noqa: BLE001  (any driver error becomes one line, password hidden)
        reason = mask_url(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) or ""
        raise UsageError(f"cannot open --storage {mask_url(url)}: {reason[:200]}") from None
