"""Optuna storage from a URL: a journal file by default, PostgreSQL (RDB with heartbeats) to scale out.

SQLite is not meant for several writers, so local multi-process runs use Optuna's JournalStorage
file backend; machines share a study through PostgreSQL, where heartbeats let a worker that died
have its trial retried by another.

Optuna records heartbeats and fails stale trials only inside ``Study.optimize``; the driver uses
ask/tell, so it does both itself: ``fail_stale_trials`` before each ask and ``heartbeat`` around each
trial. A stale trial is failed by the next worker that asks after the grace period, and
``RetryHeartbeatStaleTrialCallback`` re-enqueues it (same parameters) as a WAITING trial that the
next ``ask`` of any worker picks up.
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.trial_record import TrialRecord

HEARTBEAT_ENV = "NAS_HEARTBEAT_S"   # "INTERVAL" or "INTERVAL,GRACE" in whole seconds (tests use 1,3)
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 60                 # a thread beats during the whole trial: this only absorbs hiccups
MAX_RETRY = 2
CREATE_ATTEMPTS = 5


def mask_url(url: str | None) -> str | None:
    """Hide the password of a database URL (for messages, logs and run.json)."""
    if url is None:
        return None
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds: defaults, or ``$NAS_HEARTBEAT_S`` as 'I' or 'I,G'."""
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return HEARTBEAT_INTERVAL_S, GRACE_PERIOD_S
    parts = raw.split(",")
    if len(parts) > 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"${HEARTBEAT_ENV} must be INTERVAL or INTERVAL,GRACE in whole seconds, got {raw!r}")
    interval = int(parts[0])
    grace = int(parts[1]) if len(parts) == 2 else 3 * interval
    if grace <= interval:
        raise UsageError(f"${HEARTBEAT_ENV}: the grace period ({grace} s) must exceed the interval ({interval} s)")
    return interval, grace


def open_optuna_storage(url: str | None, default_journal: Path) -> Any:
    """``None`` or a file path (or ``journal:PATH``): journal file; ``postgresql://...``: RDB storage."""
    from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend
    from sqlalchemy.exc import IntegrityError, ProgrammingError

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
    interval, grace = heartbeat_settings()

    def create() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning for heartbeat_interval
            return retrying_rdb_storage()(
                url, heartbeat_interval=interval, grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                engine_kwargs={"pool_pre_ping": True},
            )

    try:
        for attempt in range(CREATE_ATTEMPTS - 1):
            try:
                return create()
            except (IntegrityError, ProgrammingError):
                # Workers starting together race to create Optuna's tables on an empty database
                # (duplicate key / already exists); the loser finds them created on its next try.
                time.sleep(0.2 * (attempt + 1))
        return create()
    except Exception as exc:  # noqa: BLE001  (any driver error becomes one line, password hidden)
        text = str(exc).strip()
        reason = mask_url(text.splitlines()[0] if text else type(exc).__name__) or ""
        raise UsageError(f"cannot open --storage {mask_url(url)}: {reason[:200]}") from None


# RDBStorage methods that talk to the database and are entry points (nested calls are not retried again).
_RETRIED = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
            "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
            "get_study_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
            "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_param",
            "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
            "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials", "get_best_trial",
            "record_heartbeat", "_get_trials", "_get_stale_trial_ids", "_create_new_trial", "_set_trial_param",
            "_get_best_trial_id")  # the private ones: what optuna's _CachedStorage calls on its backend


def retrying_rdb_storage() -> type:
    """RDBStorage whose database calls ride out a restart of the server (latency_db.retry).

    A ``tell`` retried after its first attempt committed meets a finished trial: that is success.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import RDBStorage

    from latency_db.retry import retry_transient

    class RetryingRDBStorage(RDBStorage):
        pass

    for name in _RETRIED:
        setattr(RetryingRDBStorage, name, retry_transient(getattr(RDBStorage, name)))
    tell = retry_transient(RDBStorage.set_trial_state_values)

    def set_trial_state_values(self: Any, trial_id: int, state: Any, values: Any = None) -> bool:
        try:
            return tell(self, trial_id, state, values)
        except UpdateFinishedTrialError:
            if RDBStorage.get_trial(self, trial_id).state == state:
                return True  # an earlier attempt committed before its connection was lost
            raise

    RetryingRDBStorage.set_trial_state_values = set_trial_state_values  # type: ignore[method-assign]
    return RetryingRDBStorage


def create_or_load_study(study_name: str, storage: Any, sampler: Any, pruner: Any) -> tuple[Any, bool]:
    """The study, and whether this call created it. Of workers starting at once exactly one creates it
    (the storage refuses the others, which load it): that one alone seeds the study (docs/cluster.md)."""
    import optuna

    try:
        study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                    sampler=sampler, pruner=pruner)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner), False


def uses_heartbeat(study: Any) -> bool:
    """Whether the study's storage has heartbeats on (RDB storage from ``open_optuna_storage``)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def ask(study: Any, run_dir: Path) -> Any:
    """``study.ask()`` after failing (and so re-enqueueing) the trials of workers whose heartbeat
    stopped; a re-enqueued trial is WAITING, so this very ask may pick it up. A retry of ``run_dir``'s
    own killed trial comes first: ``study.ask()`` hands out the oldest WAITING trial, and enqueued
    reference nets still waiting would otherwise run before it and past the worker's share."""
    import optuna

    with warnings.catch_warnings():
        # ExperimentalWarning, and "heartbeat is supposed to be used with Study.optimize": we beat ourselves
        warnings.simplefilter("ignore")
        if uses_heartbeat(study):
            optuna.storages.fail_stale_trials(study)
            trial = _claim_own_retry(study, run_dir) or study.ask()
            # beat at once: a worker killed before its first beat would leave a trial no one can find stale
            study._storage.record_heartbeat(trial._trial_id)
            return trial
        return study.ask()


def _claim_own_retry(study: Any, run_dir: Path) -> Any | None:
    """A WAITING retry of ``run_dir``'s killed trial, set RUNNING here as ``study.ask()`` claims one (the
    state change fails where another worker claimed it first), as an Optuna trial; None when none waits."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if "failed_trial" not in t.system_attrs or not TrialRecord.of(t.user_attrs).belongs_to(run_dir):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        study._thread_local.cached_all_trials = None  # as study.ask() does: the sampler reads fresh trials
        return optuna.Trial(study, t._trial_id)
    return None


@contextmanager
def heartbeat(study: Any, trial: Any) -> Iterator[None]:
    """Record the trial's heartbeat every interval from a thread while the body runs (RDB only)."""
    if not uses_heartbeat(study):
        yield
        return
    storage = study._storage
    stop = threading.Event()

    def beat() -> None:
        while True:
            with suppress(Exception):  # the database is away longer than retries last: beat again
                storage.record_heartbeat(trial._trial_id)
            if stop.wait(storage.get_heartbeat_interval()):
                return

    thread = threading.Thread(target=beat, name=f"nas-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def waiting_retries(study: Any, run_dir: Path) -> int:
    """How many retries of killed trials of ``run_dir`` wait to be run, after failing the trials gone stale now.

    A worker rerun after its share is done runs its own retries (``ask`` hands them out before enqueued
    reference nets) before it stops. (A retry of a worker that never comes back waits for the next
    worker that asks.)
    """
    import optuna
    from optuna.trial import TrialState

    if uses_heartbeat(study):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return sum(1 for t in waiting if "failed_trial" in t.system_attrs
               and TrialRecord.of(t.user_attrs).belongs_to(run_dir))


def retried_trial_numbers(trials: list[Any]) -> set[int]:
    """Numbers of stale trials that were re-enqueued: their retry, not they, counts as a trial done."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}
