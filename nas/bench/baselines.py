"""The user's own networks in the bench (``nas bench --baseline``): timed and judged as in a search, retrained
with the bench's short and long trainings, and tabulated against each budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nas.bench.render import db_text, ms_text
from nas.target import Budget

if TYPE_CHECKING:
    from nas.baseline.load import Baseline
    from nas.search.driver import Search


def bench_baselines(baselines: list[Baseline], search: Search, long_steps: int,
                    say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Each baseline's search record (latency, as given, retrained short) plus its retraining at ``long_steps``."""
    from nas.baseline.run import evaluate

    records = evaluate(baselines, search.target, search.data, search.store, say, cache=search.train_cache,
                       final_steps=long_steps)
    for record in records:
        record["retrained_long"] = record.pop("retrained_final")
    return records


def baselines_md(records: list[dict[str, Any]], budgets: list[float]) -> list[str]:
    """bench.md's section on the user's networks (no lines when there are none)."""
    if not records:
        return []
    lines = ["## Your networks (--baseline)", "",
             ("Timed with the searches' protocol on the same device (keyed by the graph's content); gains on the "
              "same validation crops: as given (your weights), and retrained from scratch with the bench's short "
              "and long trainings (first seed), so that architectures compare on equal training."), "",
             "| network | input | latency ms (median) | fits budgets (ms) | gain as given dB | retrained short dB | "
             "retrained long dB |", "|---|---|---|---|---|---|---|"]
    for r in records:
        ms = r["latency_ms"]
        fits = ", ".join(f"{b:g}" for b in budgets if Budget(b).admits_ms(ms)) or "none"

        def gain(view: str, rec: dict[str, Any] = r) -> str:
            return "-" if rec.get(view) is None else db_text(rec[view]["psnr_gain_db"])

        note = f" (does not convert: {r['retrained_note']})" if r["retrained_note"] else ""
        lines.append(f"| {r['name']} | {r['channels']}, {r['io_dtype']} | {ms_text(ms)} | {fits} | "
                     f"{db_text(r['pretrained']['psnr_gain_db'])} | {gain('retrained')}{note} | "
                     f"{gain('retrained_long')} |")
    return [*lines, ""]
