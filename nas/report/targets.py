"""The report of a ``--target`` run: one Pareto front per target device, each against its own budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nas.report.figures import BLUE, GREEN, GREY, VERMILION, pareto_front
from nas.report.run import Run
from nas.report.text import escape, fmt
from nas.rundir import TARGET_PREFIX, number

if TYPE_CHECKING:
    import plotly.graph_objects as go


def targets_figure(run: Run) -> go.Figure:
    """One panel per target: trained candidates' gain against that target's latency, its front and budget line;
    the trials that target rejected at its latency on the panel's floor."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    targets = run.targets
    fig = make_subplots(rows=1, cols=len(targets), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[f"{t['name']}: {', '.join(map(str, t.get('devices') or []))}"[:80]
                                        for t in targets])
    trained = run.candidates()
    floor = float(trained.psnr_gain_db.min()) if len(trained) else 0.0
    for i, t in enumerate(targets, start=1):
        col = TARGET_PREFIX + t["name"]
        if col not in run.trials.columns:
            continue
        cands = trained.dropna(subset=[col])
        front = cands.iloc[pareto_front(list(zip(cands[col], cands.psnr_gain_db)))]
        fig.add_trace(go.Scatter(name=f"front on {t['name']}", mode="lines", x=front[col].tolist(),
                                 y=front.psnr_gain_db.tolist(), line={"color": VERMILION, "shape": "hv"},
                                 hoverinfo="skip", showlegend=False), 1, i)
        fig.add_trace(go.Scatter(name="trained", mode="markers", x=cands[col].tolist(), y=cands.psnr_gain_db.tolist(),
                                 marker={"color": [GREEN if r else BLUE for r in cands.reference], "size": 9},
                                 text=[f"trial {n}: {fmt(gain, 3)} dB, {fmt(number(ms), 3)} ms on "
                                       f"{escape(t['name'])}"
                                       for n, gain, ms in zip(cands.number, cands.psnr_gain_db, cands[col])],
                                 customdata=cands.number.tolist(), hovertemplate="%{text}<extra></extra>",
                                 showlegend=False), 1, i)
        name = t["name"]
        rejected = run.trials[[name in str(r).split(";") for r in run.trials.rejected_by.fillna("")]]
        rejected = rejected.dropna(subset=[col])
        if len(rejected):
            fig.add_trace(go.Scatter(name=f"rejected by {t['name']}", mode="markers", x=rejected[col].tolist(),
                                     y=[floor] * len(rejected), marker={"symbol": "x-thin", "size": 10, "color": GREY,
                                                                         "line": {"color": GREY, "width": 2}},
                                     text=[f"trial {n}: over the budget of {escape(name)}" for n in rejected.number],
                                     customdata=rejected.number.tolist(), hovertemplate="%{text}<extra></extra>",
                                     showlegend=False), 1, i)
        budget = number(t.get("budget_ms"))
        if budget is not None:
            fig.add_vline(x=budget, line={"color": VERMILION, "dash": "dash"}, row=1, col=i,
                          annotation_text=f"budget {fmt(budget, 3)} ms", annotation_font_color=VERMILION)
        fig.update_xaxes(title_text=f"latency on {t['name']}, {run.latency_label} (ms)", row=1, col=i)
    fig.update_yaxes(title_text="PSNR gain over bicubic (dB)", row=1, col=1)
    fig.update_layout(template="plotly_white", height=420, hovermode="closest", margin={"t": 50, "r": 20})
    return fig


def targets_section(run: Run, fig_div: Callable[[Any, str], str]) -> str:
    """The page's section for a ``--target`` run (empty for a run on this machine alone)."""
    if not run.targets:
        return ""
    rows = "".join(
        f"<tr><th>{escape(t['name'])}</th><td>{fmt(number(t.get('budget_ms')), 3)} ms "
        f"({escape(t.get('budget_stat', 'median'))})</td><td>{escape(', '.join(map(str, t.get('devices') or [])))}"
        f"</td><td>{escape(t.get('backend', '?'))} {escape(t.get('protocol', ''))}</td></tr>" for t in run.targets)
    return ("<h2>One front per target device</h2><p class='hint'>A candidate was trained only when it fit every "
            "target's budget. Each panel plots the trained candidates against one target's latency (green: "
            "reference nets); crosses on the floor are the candidates that target rejected. The charts above use "
            f"the first target's latency.</p><table class='kv'>{rows}</table>"
            + fig_div(targets_figure(run), "targets"))
