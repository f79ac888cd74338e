"""Finalists: the best short-trained candidates within the budget are trained longer, and the best after that wins.

Short training (500 steps) favours nets that learn fast, not nets that end best (reports/bench.md, run 6), while the
user trains the winner far longer. So after the search (and after the verification round, so that the budget is
judged on verified latencies) the top ``--finalists`` feasible trials by short gain are trained ``--final-steps``
steps and the winner is the best of them after that training (``best_trial`` in nas/rundir/trials.py).

A finalist's training starts again from scratch with the same config but the step count: an ordinary training,
cached under the ordinary key (arch_id, ``TrainConfig.hash()`` with the new ``steps``, data id). Going on from the
short training would save only the short steps (a fifth at the default 4x) but its cosine schedule has already
decayed to zero, so it would need a restarted schedule whose result depends on the short training too: a key of its
own that nothing else shares. Starting again gives what ``nas bench``'s long training, the exported ``train.py`` and
any later search with the same steps compute, so they all answer from one cached row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nas.rundir import RunDirWriter, TrialRow, by_gain
from nas.search.config import SearchConfig
from nas.target import Target


def _finite(value: float) -> float | None:
    """A finite number, else None (run.json is strict JSON)."""
    return value if math.isfinite(value) else None


def pick(rows: list[TrialRow], k: int) -> list[TrialRow]:
    """The ``k`` feasible trials (trained in full within the verified budget) with the best short gain, one per
    network (a network the study met twice is trained once)."""
    chosen: list[TrialRow] = []
    for row in by_gain(r for r in rows if r.feasible):
        if len(chosen) >= k:
            break
        if all(row.arch_id != c.arch_id for c in chosen):
            chosen.append(row)
    return chosen


def train_finalists(rows: list[TrialRow], search: SearchConfig, target: Target, data: Any, cache: Any,
                    writer: RunDirWriter, say: Callable[[str], None]) -> dict[int, dict[str, Any]]:
    """Train the best ``search.finalists`` for ``search.final_steps_for`` the short steps through the training cache
    (their files go to the run dir as final.json and final_weights.safetensors); returns, per trial number, the
    outcome that trials.csv and run.json show. A finalist whose longer training did not move, or fell below
    --min-shift-consistency, gets no final gain (an ``error`` says why) and cannot win on it."""
    from search_spaces import ArchSpec

    chosen = pick(rows, search.finalists)
    if not chosen:
        return {}
    steps = search.final_steps_for(target.train_config.steps)
    config = replace(target.train_config, steps=steps)
    say(f"training {len(chosen)} finalist(s) {steps} steps each (short training: {target.train_config.steps})")
    out: dict[int, dict[str, Any]] = {}
    for rank, row in enumerate(chosen, 1):
        spec = ArchSpec.from_json((writer.path / "archs" / row.arch_id / "arch.json").read_text())
        result, cached, waited_s = cache.train(spec, data, config, target.backend, target.device)
        writer.write_training(row.arch_id, result, config.to_dict(), config.hash(), final=True)
        outcome = {"trial": row.number, "arch_id": row.arch_id, "short_rank": rank, "steps": steps,
                   "short_gain_db": row.psnr_gain_db, "final_gain_db": _finite(result.psnr_gain_db),
                   "final_psnr_db": _finite(result.psnr_db), "final_ssim": _finite(result.ssim),
                   "final_shift_consistency_db": _finite(result.shift_consistency_db), "cached": cached,
                   "train_s": 0.0 if cached else result.train_s, "lock_wait_s": waited_s, "error": ""}
        floor = target.min_shift_consistency
        if not result.moved or outcome["final_gain_db"] is None:
            outcome["error"] = "the longer training did not move from the classical baseline"
        elif floor is not None and not result.shift_consistency_db >= floor:
            outcome["error"] = f"shift consistency below --min-shift-consistency {floor:g} dB after the longer training"
        out[row.number] = outcome
        say(f"finalist {rank}/{len(chosen)} trial {row.number}: {row.psnr_gain_db:+.3f} dB after "
            f"{target.train_config.steps} steps, {result.psnr_gain_db:+.3f} dB after {steps}"
            + (" (cached)" if cached else f" ({result.train_s:.0f} s)"))
    return out


def with_finals(rows: list[TrialRow], finals: dict[int, dict[str, Any]]) -> list[TrialRow]:
    """The rows with each finalist's steps and final gain (none for a finalist whose longer training failed)."""
    out = []
    for row in rows:
        final = finals.get(row.number)
        if final is not None:
            gain = None if final["error"] else final["final_gain_db"]
            row = replace(row, final_steps=final["steps"], final_psnr_gain_db=gain)
        out.append(row)
    return out


def finalists_summary(finals: dict[int, dict[str, Any]], winner: TrialRow | None) -> dict[str, Any] | None:
    """run.json's record of the finalists: each one's short and final gain, and whether the longer training changed
    the winner (the short training's best is the finalist of short rank 1). None when there were none."""
    if not finals:
        return None
    ranked = sorted(finals.values(), key=lambda f: f["short_rank"])
    won = None if winner is None else finals.get(winner.number)
    return {"steps": ranked[0]["steps"], "n": len(ranked),
            "train_s": round(sum(f["train_s"] for f in ranked), 3),
            "winner_short_rank": None if won is None else won["short_rank"],
            "changed_winner": won is not None and won["short_rank"] != 1,
            "trials": [{k: v for k, v in f.items() if k != "lock_wait_s"} for f in ranked]}
