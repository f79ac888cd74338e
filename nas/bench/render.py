"""bench.md: the bench's result as Markdown tables."""

from __future__ import annotations

from typing import Any


# ---------------------------------------------------------------------- bench.md
def ms_text(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def db_text(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def _pm(s: dict[str, Any], fmt: str = "+.3f") -> str:
    if s["mean"] is None:
        return "-"
    return f"{s['mean']:{fmt}} ± {s['sd']:.3f}" + (f" (n={s['n']})" if s["n"] != 1 else "")


def _cell(text: str) -> str:
    """Text for a Markdown table cell: an arch summary's '|' separators would split the cell."""
    return text.replace("|", "\\|")


def _yes(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


def render_md(r: dict[str, Any]) -> str:
    """bench.md: the settings, references, one table per budget, long training and the targets."""
    c = r["config"]
    lines = [
        "# nas bench", "",
        (f"Backend {r['backend']} (protocol {r['protocol']}) on {r['machine']['device']}; input "
        f"{r['input_size'][0]}x{r['input_size'][1]}, task {c['task']}; "
        f"budgets {', '.join(f'{b:g}' for b in c['budgets'])} ms; "
        f"seeds {', '.join(map(str, c['seeds']))}; {c['trials']} trials per search; short training "
        f"{r['train_config']['steps']} steps, long training {c['long_steps']} steps. Samplers: "
        f"{', '.join(c['samplers'])}; the first is the search, judged against the targets. Every search (the "
        "RandomSampler control alike) enqueues the reference nets as its first trials. Gains are validation "
        "PSNR over plain bicubic on held-out images the search never trains on "
        f"({', '.join(r['data']['val'])}); ± is the sample standard deviation over seeds."), "",
        (f"Wall {r['wall_s']:.0f} s (searches {r['phase_s']['searches']:.0f} s, references outside the searches "
         f"{r['phase_s']['references']:.0f} s, long training {r['phase_s']['long']:.0f} s); "
         f"load average (1/5/15 min) before {r['machine']['loadavg_before']}, "
        f"after {r['machine']['loadavg_after']}; new latency rows {r['new_latency_rows']}, new trainings "
        f"{r['new_trainings']} (shared database: a candidate is measured once, an (arch, training config) "
        "trained once across the bench)."), "",
        "## References (short training)", "",
        "| reference | latency ms (median) | gain dB | SSIM | arch |", "|---|---|---|---|---|",
    ]
    for name, e in r["references"].items():
        label = f"{name} (modern)" if e["kind"] == "modern" else name
        lines.append(f"| {label} | {ms_text(e['latency_ms'])} | {_pm(e['gain'])} | {_pm(e['ssim'], '.4f')} | "
                     f"{_cell(e['summary'])} |")
    for name, why in r.get("references_left_out", {}).items():
        lines += ["", f"Left out: {name}, {why}."]
    lines += ["", ("Plain bicubic and bilinear are timed as graphs holding only the Resize (no learned layer; "
              "the search space needs at least one); bicubic's gain is 0 by definition, bilinear's is its "
              "PSNR minus bicubic's on the same images. The reference nets' gains come from the searches' "
              "own short trainings (shared cache); a net no budget admits is trained by the bench itself."), ""]
    for t in r["budgets"]:
        lines += [f"## Budget {t['budget_ms']:g} ms", "",
                  ("| | best gain dB | its latency ms | its SSIM | winner is a reference | trials | over budget "
                  "(trainings avoided) | their train s | measure s | train s | other s |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for sampler, s in t["samplers"].items():
            ts = s["time_s"]
            lines.append(
                f"| {sampler} | {_pm(s['gain'])} | {_pm(s['latency_ms'], '.3f')} | {_pm(s['ssim'], '.4f')} | "
                f"{s['winners_are_references']}/{s['seeds_with_result']} | {s['n_trials']} | {s['n_over_budget']} | "
                f"{s['over_budget_train_s']:g} | {ts['measure']:.0f} | {ts['train']:.0f} | {ts['other']:.0f} |")
        ref = t["best_reference"]
        lines += ["", "Best reference under the budget: " + (
            "none fits" if ref is None else
            f"{ref['name']} at {ms_text(ref['latency_ms'])} ms, {_pm(ref['gain'])} dB, SSIM {_pm(ref['ssim'], '.4f')}")
            + f" (fitting: {', '.join(t['references_that_fit']) or 'none'}).", ""]
        per_seed = [x for x in r["runs"] if x["budget_ms"] == t["budget_ms"]]
        lines += ["| sampler | seed | best gain dB | latency ms | SSIM | arch |", "|---|---|---|---|---|---|"]
        for x in per_seed:
            b = x["best"]
            lines.append(f"| {x['sampler']} | {x['seed']} | " + (
                "- | - | - | nothing under the budget |" if b is None else
                f"{db_text(b['psnr_gain_db'])} | {ms_text(b['latency_ms'])} | {b['ssim']:.4f} | "
                f"{(b['reference'] + ': ') if b['reference'] else ''}{_cell(b['summary'])} |"))
        lines.append("")
    from nas.bench.baselines import baselines_md

    lines += baselines_md(r.get("baselines", []), list(c["budgets"]))
    lg = r["long"]
    rho = "not defined (fewer than 3 nets or a constant side)" if lg["spearman"] is None else f"{lg['spearman']:+.3f}"
    lines += [f"## Short ({lg['short_steps']} steps) vs long ({lg['long_steps']} steps) training", "",
              f"Nets: {lg['which']}.", "",
              "| net | seed | short gain dB | long gain dB | long SSIM | arch |", "|---|---|---|---|---|---|"]
    for n in lg["nets"]:
        lines.append(f"| {' = '.join(n['labels'])} | {n['seed']} | {db_text(n['short']['psnr_gain_db'])} | "
                     f"{db_text(n['long']['psnr_gain_db'])} | {n['long']['ssim']:.4f} | {_cell(n['summary'])} |")
    lines += ["", f"Spearman rank correlation, short vs long gain, over {lg['n_pairs']} nets: {rho}.", "",
              "## Targets", "",
              ("Judged seed by seed: the winner must beat the best fitting reference trained with the same seed on "
              "every seed; for the search against random, a seed where a sampler found nothing under the budget "
              "counts at that reference's gain (the fallback a user would ship)."), "",
              ("| budget ms | winner beats best reference that fits, every seed | after the long training | search "
               "beats random (mean over seeds) | gate trained no over-budget candidate |"), "|---|---|---|---|---|"]
    for t in r["targets"]:
        ref = "nothing fits" if t["reference"] is None else f"{t['reference']} {db_text(t['reference_gain_db'])}"
        found = t["seeds_found"]
        first = (f"{_yes(t['winner_beats_reference'])}: beats it on {t['seeds_beating_reference']}/{t['seeds']} "
                 f"seeds; {t['sampler']} best {db_text(t['winner_gain_db'])} "
                 f"(found on {found[t['sampler']]}/{t['seeds']}) "
                 f"vs {ref}")
        if t["winners_are_references"]:
            first += f"; the winner is that reference on {t['winners_are_references']} seeds"
        wtl = t["search_vs_random"]
        lines.append(
            f"| {t['budget_ms']:g} | {first} | {_yes(t['winner_beats_reference_long'])}: "
            f"{t['seeds_beating_reference_long']}/{t['seeds']} seeds at {t['long_steps']} steps "
            f"| {_yes(t['search_beats_random'])}: {db_text(t['search_mean_db'])} vs "
            f"{db_text(t['random_mean_db'])} (random found on {found['random']}/{t['seeds']}); per seed {t['sampler']} "
            f"{wtl['wins']} better, {wtl['ties']} tied, {wtl['losses']} worse | {_yes(t['gate_ok'])}: "
            f"{t['over_budget_trials']} over-budget trials, {t['over_budget_train_s']:g} s of training |")
    return "\n".join(lines) + "\n"
