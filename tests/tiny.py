"""The tiny search every end-to-end test shares: its arguments and a runner for the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys

# Small enough for CI on 2 cores, large enough that the gate, the cache and training all act:
# 32x48 frames, a budget that the larger references miss, 14 trials (the 12 reference nets the search
# starts from, then 2 sampled by the evolution sampler) of 150 training steps (the fewest at which the
# small references beat bicubic: they start from a bilinear base, 0.6 dB below).
# Its two best in budget are trained 300 steps as finalists (issue #25), the best after that training wins.
TINY_ARGS = ["--task", "sr2x", "--input-size", "32x48", "--budget-ms", "0.45", "--trials", "14",
             "--train-steps", "150", "--seed", "0", "--backend", "onnxruntime", "--finalists", "2",
             "--final-steps", "300"]


# Tests about something else than the finalists (faults, clusters, agents, pruning, bad input) turn them off:
# the finalists' longer training would be most of such a test's time, and test_finalists.py and the session's
# tiny search (TINY_ARGS) test them with the real default path.
NO_FINALISTS = ["--finalists", "0"]


def run_nas(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``nas`` CLI in a subprocess (as a user would)."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, env=env)
