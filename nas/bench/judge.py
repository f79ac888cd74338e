"""The bench's verdicts: classical baselines scored on the validation data, targets judged seed by seed."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from nas.bench.config import CLASSICAL

if TYPE_CHECKING:

    from nas.training.data import TaskData

def classical_scores(data: TaskData, scale: int, noise_sigma: float) -> dict[str, dict[str, float]]:
    """Mean validation PSNR and SSIM of plain bicubic and bilinear upsampling, as ``validate`` measures a net."""
    import torch

    from nas.training.data import val_pairs
    from nas.training.metrics import psnr, ssim
    from search_spaces.network import ClassicalUpsample

    pairs = val_pairs(data, noise_sigma)
    out = {}
    with torch.no_grad():
        for mode in CLASSICAL:
            up = ClassicalUpsample(scale, mode)
            p = [float(psnr(up(inp).clamp(0, 1), tgt, scale)[0]) for inp, tgt in pairs]
            s = [float(ssim(up(inp).clamp(0, 1), tgt, scale)[0]) for inp, tgt in pairs]
            out[mode] = {"psnr_db": statistics.fmean(p), "ssim": statistics.fmean(s)}
    return out


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's three targets per budget, judged seed by seed (each seed trains every net the same way).

    Winner vs reference: the search's best (the first sampler's) must beat the best fitting reference's
    gain at the same seed, on every seed; judged again after the long training of both at each seed (``long``'s
    ``judged``), since short training favours nets that learn fast. Search vs random: mean over seeds of each
    sampler's best, where a seed that found nothing under the budget counts at the best fitting reference's gain
    (what a user would ship instead); per-seed wins, ties and losses beside it. Gate: no over-budget trial of any
    sampler was trained.
    """
    seeds = result["config"]["seeds"]
    searcher = result["config"]["samplers"][0]
    out = []
    for table in result["budgets"]:
        budget, ref = table["budget_ms"], table["best_reference"]
        best = {(r["sampler"], r["seed"]): None if r["best"] is None else r["best"]["psnr_gain_db"]
                for r in result["runs"] if r["budget_ms"] == budget}
        fallback = {k: None if ref is None else
                    result["references"][ref["name"]]["per_seed"][str(k)]["psnr_gain_db"] for k in seeds}
        beating = sum(1 for k in seeds if best[(searcher, k)] is not None
                      and (fallback[k] is None or best[(searcher, k)] > fallback[k]))
        scores = {key: fallback[key[1]] if gain is None else gain for key, gain in best.items()}
        paired = [(scores[(searcher, k)], scores[("random", k)]) for k in seeds]
        paired = [(a, b) for a, b in paired if a is not None and b is not None]
        search_mean = statistics.fmean(a for a, _ in paired) if paired else None
        rnd_mean = statistics.fmean(b for _, b in paired) if paired else None
        mine, rnd, every = table["samplers"][searcher], table["samplers"]["random"], table["samplers"].values()
        judged = [j for j in result["long"].get("judged", []) if j["budget_ms"] == budget]
        beating_long = sum(1 for j in judged if j["winner_long_gain_db"] is not None
                           and (j["reference_long_gain_db"] is None
                                or j["winner_long_gain_db"] > j["reference_long_gain_db"]))
        out.append({
            "budget_ms": budget, "seeds": len(seeds), "sampler": searcher,
            "winner_beats_reference": beating == len(seeds), "seeds_beating_reference": beating,
            "winner_beats_reference_long": beating_long == len(seeds), "seeds_beating_reference_long": beating_long,
            "long_steps": result["long"]["long_steps"],
            "seeds_found": {name: s["seeds_with_result"] for name, s in table["samplers"].items()},
            "winner_gain_db": mine["gain"]["mean"], "random_gain_db": rnd["gain"]["mean"],
            "reference": None if ref is None else ref["name"],
            "reference_gain_db": None if ref is None else ref["gain"]["mean"],
            "winners_are_references": mine["winners_are_references"],
            "search_beats_random": search_mean is not None and rnd_mean is not None and search_mean > rnd_mean,
            "search_mean_db": search_mean, "random_mean_db": rnd_mean,
            "search_vs_random": {"wins": sum(a > b for a, b in paired), "ties": sum(a == b for a, b in paired),
                                 "losses": sum(a < b for a, b in paired)},
            "gate_ok": all(s["gate_ok"] for s in every),
            "over_budget_trials": sum(s["n_over_budget"] for s in every),
            "over_budget_train_s": sum(s["over_budget_train_s"] for s in every),
        })
    return out
