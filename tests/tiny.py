"""The tiny search every end-to-end test shares: its arguments and a runner for the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Small enough for CI on 2 cores, large enough that the gate, the cache and training all act:
# 32x48 frames, a budget that the larger references miss, 14 trials (the 12 reference nets the search
# starts from, then 2 sampled by the evolution sampler) of 150 training steps (the fewest at which the
# small references beat bicubic: they start from a bilinear base, 0.6 dB below).
# Its two best in budget are trained 200 steps as finalists (issue #25), the best after that training wins (more
# steps than the short training is what is tested; at 300 the finalists were a third of the search's time).
TINY_ARGS = ["--task", "sr2x", "--input-size", "32x48", "--budget-ms", "0.45", "--trials", "14",
             "--train-steps", "150", "--seed", "0", "--backend", "onnxruntime", "--finalists", "2",
             "--final-steps", "200"]


# Tests about something else than the finalists (faults, clusters, agents, pruning, bad input) turn them off:
# the finalists' longer training would be most of such a test's time, and test_finalists.py and the session's
# tiny search (TINY_ARGS) test them with the real default path.
NO_FINALISTS = ["--finalists", "0"]


def run_nas(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``nas`` CLI in a subprocess (as a user would)."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, env=env)


def copy_as_gated(db: Path, run_dir: Path, dest: Path) -> str:
    """A copy of a search's SQLite database as that search's latency gates read it, for a later search that must
    meet the same latencies: without the visits added after its last trial (its verification round, docs/latency.md
    "Close calls", or other searches on the database), each row's estimate and settled flag taken again over the
    visits kept. Such visits can move a near-budget reference across the budget (a minimum over more visits only
    falls), and the later search's gate and sampler would see another latency. The p90s keep every sample: a median
    budget never reads them.
    Returns the copy's path."""
    import sqlite3

    import optuna

    from latency_db.backends.cpu import CPU_PROTOCOLS
    from latency_db.measure import visits_details, visits_of
    from latency_db.windows import estimate_ms

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal")))
    (study,) = storage.get_all_studies()
    trials = optuna.load_study(study_name=study.study_name, storage=storage).get_trials(deepcopy=False)
    last = max(t.datetime_complete for t in trials if t.datetime_complete is not None).timestamp()
    plans = {p.name: p.windows for p in CPU_PROTOCOLS.values() if p.windows is not None}
    with sqlite3.connect(db) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)  # with what is still in the write-ahead log (a file copy would miss it)
    with sqlite3.connect(dest) as conn:
        conn.row_factory = sqlite3.Row
        for row in [dict(r) for r in conn.execute("SELECT id, status, protocol, details_json FROM latency")]:
            visits = visits_of(row)
            kept = [v for v in visits if v.at <= last]
            if row["status"] != "ok" or row["protocol"] not in plans or len(kept) == len(visits):
                continue
            if not kept:  # measured after the search (by another one on this database): the gates never read it
                conn.execute("DELETE FROM latency WHERE id = ?", (row["id"],))
                continue
            details = {**json.loads(row["details_json"]), **visits_details(kept, plans[row["protocol"]])}
            conn.execute("UPDATE latency SET median_ms = ?, attempts = ?, unstable = ?, details_json = ? WHERE id = ?",
                         (estimate_ms(kept), len(kept), not details["settled"], json.dumps(details, sort_keys=True),
                          row["id"]))
    return str(dest)
