"""A study shared by several workers is self-sufficient (docs/cluster.md).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError
from nas.rundir import RunDirWriter, TrialRow, run_json, summarize, trial_row
from nas.trial_record import TrialRecord

if TYPE_CHECKING:
    from nas.target import Budget, Target
    from nas.training.data import TaskData
    from nas.training.train_cache import TrainCache

IDENTITY = "identity"      # study attribute: what the study's trials depend on (study_identity)
RUN_META = "run_meta"      # study attribute: run.json's settings, written by the study's first worker
WORKER = "worker:"         # study attribute prefix: one per worker (its run dir), see WorkerBeacon
RUNNING, DONE = "running", "done"
IDENTITY_WAIT_S = 30       # how long a worker of a shared study waits for its creator to seed it


def study_identity(target: Target, data: TaskData) -> dict[str, Any]:
    """What a study's trials depend on: mixing runs that differ here would mix incomparable numbers.
    The degradation, the stability floor and the targets appear only when set, so that earlier studies resume."""
    t = target
    identity = {"task": t.space.name, "space_version": t.space.version, "backend": t.backend.name,
                "input_size": list(t.input_size), "budget_ms": t.budget.limit_ms,
                "budget_stat": t.budget.stat, "train_config": t.train_config.hash(), "data": data.data_id}
    if data.degradation != "bicubic":
        identity["degradation"] = data.degradation
    if t.min_shift_consistency is not None:
        identity["min_shift_consistency"] = t.min_shift_consistency
    if t.targets:
        identity["targets"] = [[x.name, x.budget.limit_ms] for x in t.targets]
    if t.precisions:
        identity["precision"] = list(t.precisions)
    return identity


def seed_or_check(study: Any, name: str, identity: dict[str, Any], created: bool,
                  warm_starts: dict[str, dict[str, Any]], shared: bool) -> None:
    """The study's creator seeds it (``warm_starts``: reference name -> sampler params, then its identity);
    any other worker checks that it runs the same settings. Workers starting at once never both seed it
    (``create_or_load_study``). A worker of a ``shared`` study waits a while for a creator still seeding."""
    from nas.trial_record import reference_attrs

    if created:
        for reference, params in warm_starts.items():
            study.enqueue_trial(params, user_attrs=reference_attrs(reference))
        study.set_user_attr(IDENTITY, identity)
        return
    deadline = time.monotonic() + (IDENTITY_WAIT_S if shared else 0)
    while (stored := study.user_attrs.get(IDENTITY)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if stored is None:  # its creator stopped before seeding it: adopt it, without warm starts
        study.set_user_attr(IDENTITY, identity)
    elif stored != identity:
        changed = sorted(k for k in identity if stored.get(k) != identity[k])
        raise UsageError(f"study '{name}' was created with other settings ({', '.join(changed)} "
                         "differ): use another --study name or the same settings")


def publish_run_meta(study: Any, meta: dict[str, Any]) -> None:
    """Record the run's settings on the study once (workers of one study share them: see the identity)."""
    if RUN_META not in study.user_attrs:
        study.set_user_attr(RUN_META, meta)


@dataclass
class Materialized:
    """What ``materialize`` rebuilt: the trials table, and the trained trials whose weights it could not find."""

    rows: list[TrialRow]
    missing_weights: list[int]


def materialize(study: Any, writer: RunDirWriter, train_cache: TrainCache | None, budget: Budget,
                verified: Mapping[int, Mapping[str, Any]] | None = None) -> Materialized:
    """Write the arch files of every finished trial of ``study`` that the run dir lacks, and trials.csv.

    Trial attributes come from the shared storage: each spec is validated (and must hash to its arch
    id) before anything is written from it. Weights come from ``train_cache`` (None: none are copied).
    """
    from search_spaces import ArchSpec, SpecError

    identity = study.user_attrs.get(IDENTITY) or {}
    meta = study.user_attrs.get(RUN_META) or {}
    config_hash, data_id = identity.get("train_config"), identity.get("data")
    train_config = meta.get("train_config") if isinstance(meta.get("train_config"), dict) else {}
    rows: list[TrialRow] = []
    missing: list[int] = []
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            continue
        record = TrialRecord.of(t.user_attrs)
        row = trial_row(t.number, t.state.name, record, budget, verified)
        try:
            spec = ArchSpec.from_json(record.spec_json) if record.spec_json is not None else None
        except SpecError:
            spec = None
        if spec is None or not spec.answers_to(record.arch_id):
            rows.append(row)
            continue
        # a trial from before issue #25 may name a non-canonical spec: the run dir keys it by its canonical id
        rows.append(replace(row, arch_id=spec.arch_id, summary=spec.summary()))
        folder = writer.path / "archs" / spec.arch_id
        if not (folder / "arch.json").is_file():
            writer.write_arch(spec)
        if record.latency_record is not None and not (folder / "latency.json").is_file():
            writer.write_latency(spec.arch_id, record.latency_record)
        if not record.trained or record.pruned_at_step is not None \
                or (folder / "weights.safetensors").is_file():
            continue  # a training stopped at a rung is not in the training cache: only its worker has its files
        result = None
        if train_cache is not None and isinstance(config_hash, str) and isinstance(data_id, str):
            result = train_cache.get(record.arch_id, config_hash, data_id)  # the id it was trained under
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
                except Exception:  # noqa: BLE001  (a storage hiccup: the next beat tries again)
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

    import optuna

    from nas.search.storage import mask_url, open_optuna_storage
    from nas.target import Budget, open_latency_store
    from nas.training.train_cache import TrainCache

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
    targets = meta.get("targets") if isinstance(meta.get("targets"), list) else []  # a --target run's devices
    writer = RunDirWriter(run_dir, tuple(str(t["name"]) for t in targets if isinstance(t, dict) and "name" in t))
    writer.check(study_name)
    store = open_latency_store(latency_db)
    writer.create()
    done = materialize(study, writer, TrainCache(store.shared_engine), budget)
    store.close()
    if done.missing_weights:
        print(f"nas: warning: no weights for trial(s) {', '.join(map(str, done.missing_weights))} in the training "
              "cache of --latency-db: pass the database the workers shared", file=sys.stderr)
    writer.write_run_json(run_json(meta, run_dir, summarize(done.rows)))
    return run_dir
