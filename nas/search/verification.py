"""Close calls decided twice (docs/latency.md, "Close calls"): a first estimate within the CPU's noise band of the
budget is visited again before the gate decides, and before a search names its winner it re-times, interleaved,
the winner, the runners-up it could swap with and every reference near the budget, and judges from those numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nas.rundir import TrialRow
from nas.target import Budget, Target

NEAR_REFERENCE = 0.15   # references within this (relative) of the budget are re-timed with the finalists
VERIFY_ROUNDS = 2       # interleaved visits each re-timed net gets in the verification round
MAX_FINALISTS = 5       # trained candidates re-timed at most (the winner and its runners-up)


def settle_close_call(target: Target, store: Any, spec: Any, latency: Any, details: dict[str, Any]) -> Any:
    """More visits (a few seconds apart) while the estimate is a close call and the row is not settled."""
    from latency_db.measure import refine

    plan = target.backend.protocol.windows
    for _ in range(0 if plan is None else plan.visits):
        value = target.budget.value_of(latency)
        if not latency.ok or latency.settled or not target.budget.close_call(value, latency.in_spell):
            break
        latency = refine(spec, target.workload, target.backend, store, details)
    return latency


def finalists(rows: list[TrialRow], budget: Budget, keep: int = 1) -> list[TrialRow]:
    """The trials whose verdict could change the winner: the feasible ones in order of gain down to the ``keep``-th
    that fits outside the noise band (at most MAX_FINALISTS + keep - 1; ``keep``: the trials trained longer before
    the winner is named, nas/search/finalists.py), and every reference within NEAR_REFERENCE."""
    chosen: list[TrialRow] = []
    clear = 0
    for row in sorted((r for r in rows if r.feasible), key=lambda r: -(r.psnr_gain_db or 0.0)):
        chosen.append(row)
        clear += not budget.close_call(budget.value(row.latency_ms, row.latency_p90_ms))
        if len(chosen) >= MAX_FINALISTS + max(keep, 1) - 1 or clear >= max(keep, 1):
            break
    seen = {r.arch_id for r in chosen}
    for row in rows:
        value = budget.value(row.latency_ms, row.latency_p90_ms)
        if (row.reference and row.arch_id not in seen and value is not None
                and abs(value / budget.limit_ms - 1) <= NEAR_REFERENCE):
            chosen.append(row)
            seen.add(row.arch_id)
    return chosen


def verify_finalists(rows: list[TrialRow], target: Target, store: Any, run_dir: Any,
                     say: Callable[[str], None], keep: int = 1) -> dict[int, dict[str, Any]]:
    """Re-time the finalists in VERIFY_ROUNDS interleaved rounds (one visit each per round, so each net's visits
    are spread over the round); returns, per trial number, the verified latency figures (empty off the CPU)."""
    from latency_db.measure import refine
    from search_spaces import ArchSpec

    if target.backend.protocol.windows is None:
        return {}
    chosen = finalists(rows, target.budget, keep)
    specs = {}
    for row in chosen:
        path = run_dir / "archs" / row.arch_id / "arch.json"
        if path.is_file():
            specs[row.number] = ArchSpec.from_json(path.read_text())
    if not specs:
        return {}
    say(f"verifying {len(specs)} finalist(s) and reference(s) near the budget: {VERIFY_ROUNDS} interleaved visits each")
    latest: dict[int, Any] = {}
    for _ in range(VERIFY_ROUNDS):
        for number, spec in specs.items():
            latest[number] = refine(spec, target.workload, target.backend, store, force=True)
    out = {}
    for number, result in latest.items():
        if result.ok:
            out[number] = {"median_ms": result.median_ms, "p90_ms": result.p90_ms, "visits": result.visits}
    return out


def verification_summary(rows: list[TrialRow], verified: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """run.json's record of the verification round: each re-timed trial's first and verified latency, what changed."""
    by_number = {r.number: r for r in rows}
    return [{"trial": n, "arch_id": by_number[n].arch_id, "reference": by_number[n].reference,
             "first_ms": by_number[n].latency_first_ms, "verified_ms": v["median_ms"], "visits": v["visits"],
             "changed": by_number[n].verdict_change}
            for n, v in sorted(verified.items()) if n in by_number]

