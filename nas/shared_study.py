"""A study shared by several workers is self-sufficient (docs/design.md, "Running on a cluster").

Everything needed to report on and export any trial lives where every worker reaches it: the
spec, the counts and the whole latency record in the trial's user attributes (the Optuna storage),
the weights and training record in the training cache (the shared latency database, keyed by
content: arch_id, training-config hash, data fingerprint), and the run's settings in the study's
``run_meta`` attribute. So any worker, or ``nas report`` / ``nas export --storage URL --study NAME``
with no run dir at all, rebuilds the study's run dir: ``materialize`` writes the arch files of
every finished trial and the trials table.

Workers announce themselves through a ``WorkerBeacon`` (a study attribute per worker, beaten from a
thread); a worker that has done its trials waits for the others (``wait_for_workers``) before it
writes its report and export, so that every worker's ``best/`` is the whole study's winner.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError
from nas.rundir import RunDirWriter, TrialRow, summarize, trial_row

if TYPE_CHECKING:
    from nas.target import Budget
    from nas.train_cache import TrainCache

RUN_META = "run_meta"      # study attribute: run.json's settings, written by the study's first worker
WORKER = "worker:"         # study attribute prefix: one per worker (its run dir), see WorkerBeacon
RUNNING, DONE = "running", "done"


def publish_run_meta(study: Any, meta: dict[str, Any]) -> None:
    """Record the run's settings on the study once (workers of one study share them: see the identity)."""
    if RUN_META not in study.user_attrs:
        study.set_user_attr(RUN_META, meta)


@dataclass
class Materialized:
    """What ``materialize`` rebuilt: the trials table, and the trained trials whose weights it could not find."""

    rows: list[TrialRow]
    missing_weights: list[int]


def materialize(study: Any, writer: RunDirWriter, train_cache: TrainCache | None, budget: Budget) -> Materialized:
    """Write the arch files of every finished trial of ``study`` that the run dir lacks, and trials.csv.

    Trial attributes come from the shared storage: each spec is validated (and must hash to its arch
    id) before anything is written from it. Weights come from ``train_cache`` (None: none are copied).
    """
    from search_spaces import ArchSpec, SpecError

    identity = study.user_attrs.get("identity") or {}
    meta = study.user_attrs.get(RUN_META) or {}
    config_hash, data_id = identity.get("train_config"), identity.get("data")
    train_config = meta.get("train_config") if isinstance(meta.get("train_config"), dict) else {}
    rows: list[TrialRow] = []
    missing: list[int] = []
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            continue
        rows.append(trial_row(t.number, t.state.name, t.user_attrs, budget))
        attrs = t.user_attrs
        try:
            spec = ArchSpec.from_json(attrs["spec"]) if isinstance(attrs.get("spec"), str) else None
        except SpecError:
            spec = None
        if spec is None or spec.arch_id != attrs.get("arch_id"):
            continue
        folder = writer.path / "archs" / spec.arch_id
        if not (folder / "arch.json").is_file():
            writer.write_arch(spec)
        record = attrs.get("latency_record")
        if isinstance(record, dict) and not (folder / "latency.json").is_file():
            writer.write_latency(spec.arch_id, record)
        if not attrs.get("train") or attrs.get("pruned_at_step") is not None \
                or (folder / "weights.safetensors").is_file():
            continue  # a training stopped at a rung is not in the training cache: only its worker has its files
        result = None
        if train_cache is not None and isinstance(config_hash, str) and isinstance(data_id, str):
            result = train_cache.get(spec.arch_id, config_hash, data_id)
        if result is None:
            missing.append(t.number)
        else:
            writer.write_training(spec.arch_id, result, train_config, config_hash)
    rows.sort(key=lambda r: r.number)
    writer.write_trials(rows)
    return Materialized(rows=rows, missing_weights=missing)


class WorkerBeacon:
    """This worker's presence in the study: ``{"state", "trials", "beat"}`` under ``worker:<run dir>``,
    the beat counter raised every ``interval`` seconds from a thread while the worker runs."""

    def __init__(self, study: Any, run_dir: Path, trials: int, interval: float) -> None:
        self.study, self.key, self.trials, self.interval = study, WORKER + str(run_dir.resolve()), trials, interval
        self.beat = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _set(self, state: str) -> None:
        self.study.set_user_attr(self.key, {"state": state, "trials": self.trials, "beat": self.beat})

    def start(self) -> None:
        self._set(RUNNING)

        def beat() -> None:
            while not self._stop.wait(self.interval):
                self.beat += 1
                try:
                    self._set(RUNNING)
                except Exception:  # noqa: BLE001, S112  (a storage hiccup: the next beat tries again)
                    continue

        self._thread = threading.Thread(target=beat, name="nas-worker-beacon", daemon=True)
        self._thread.start()

    def done(self) -> None:
        """Stop beating and say this worker has finished (called however the worker ends)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._set(DONE)


def other_workers(study: Any, me: str) -> dict[str, dict[str, Any]]:
    """The other workers' beacons: {key: {"state", "trials", "beat"}}."""
    return {k: v for k, v in study.user_attrs.items()
            if k.startswith(WORKER) and k != me and isinstance(v, dict)}


def wait_for_workers(study: Any, me: str, interval: float, grace: float,
                     say: Callable[[str], None]) -> list[str]:
    """Wait until every other worker of the study is done, or silent (its beat unchanged) for ``grace``
    seconds: a worker that died. Returns the run dirs of the workers given up on. Beats are compared
    by their changes on this machine's clock, so the workers' clocks need not agree."""
    seen: dict[str, tuple[int, float]] = {}
    announced = False
    while True:
        now = time.monotonic()
        waiting, gone = [], []
        for key, beacon in other_workers(study, me).items():
            if beacon.get("state") != RUNNING:
                continue
            beat = beacon.get("beat")
            last = seen.get(key)
            if last is None or last[0] != beat:
                seen[key] = (beat, now)
            (gone if now - seen[key][1] > grace else waiting).append(key.removeprefix(WORKER))
        if not waiting:
            return gone
        if not announced:
            say(f"waiting for {len(waiting)} other worker(s) of the study to finish, so that this run dir's "
                "report and best/ cover the whole study")
            announced = True
        time.sleep(interval)


def rebuild_run_dir(storage: str, study_name: str, run_dir: Path, latency_db: str | None) -> Path:
    """The run dir of a shared study, rebuilt from the storage and the training cache alone (no worker's
    disk): what ``nas report`` and ``nas export`` read with ``--storage URL --study NAME``."""
    import sys
    from datetime import datetime, timezone

    import optuna

    from nas.storage import mask_url, open_optuna_storage
    from nas.target import Budget, open_latency_store
    from nas.train_cache import TrainCache

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opened = open_optuna_storage(storage, run_dir / "study.journal")
    try:
        study = optuna.load_study(study_name=study_name, storage=opened)
    except KeyError:
        raise UsageError(f"--storage {mask_url(storage)} holds no study '{study_name}' (check --study)") from None
    meta = study.user_attrs.get(RUN_META)
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict):
        raise UsageError(f"study '{study_name}' has no run settings ({RUN_META}): it was written by an older nas; "
                         "report on a worker's --run-dir instead")
    budget = Budget(config.get("budget_ms"), config.get("budget_stat", "median"))
    writer = RunDirWriter(run_dir)
    writer.check(study_name)
    store = open_latency_store(latency_db)
    writer.create()
    done = materialize(study, writer, TrainCache(store.url), budget)
    store.close()
    if done.missing_weights:
        print(f"nas: warning: no weights for trial(s) {', '.join(map(str, done.missing_weights))} in the training "
              "cache of --latency-db: pass the database the workers shared", file=sys.stderr)
    writer.write_run_json({**meta, "config": {**config, "run_dir": str(run_dir)},
                           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "argv": sys.argv, "interrupted": False, "summary": summarize(done.rows)})
    return run_dir
