"""The report's Plotly figures: the Pareto front with the budget line, search progress, latency vs MACs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


from nas.report.baselines import add_baseline_traces, baseline_points
from nas.report.run import Run
from nas.report.text import escape, fmt, si
from nas.rundir import number

# Colours: Okabe-Ito (readable with colour-blindness), one meaning each across all figures.
BLUE, ORANGE, GREEN, VERMILION, GREY, YELLOW = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#8c8c8c", "#F0E442"


# ---------------------------------------------------------------------- derived data
def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (lower latency and higher gain), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front



# ---------------------------------------------------------------------- figures
def _hover(run: Run, row: Any) -> str:
    """Hover text for one trial; every piece from the run dir is escaped."""
    lines = [f"<b>trial {row.number}</b>" + (f" ({escape(row.reference)})" if row.reference else ""),
             escape(run.summary_of(row)),
             f"latency {fmt(row.latency_ms, 3)} ms median, {fmt(row.latency_p90_ms, 3)} ms p90",
             f"{si(row.macs, 'MAC')}, {si(row.params, 'params')}"]
    first = number(getattr(row, "latency_first_ms", None))
    if first is not None and number(row.latency_ms) is not None and abs(first - row.latency_ms) > 1e-9:
        again = "verified before naming the winner" if getattr(row, "verified", False) else "re-timed (close call)"
        change = getattr(row, "verdict_change", "") or ""
        lines.insert(3, f"first estimate {fmt(first, 3)} ms, {again}" + (f": {escape(change)}" if change else ""))
    if number(row.stopped_at) is not None:
        lines.append(f"stopped by the pruner at step {int(row.stopped_at)}: gain there {fmt(row.psnr_gain_db, 3)} dB")
    elif number(row.psnr_gain_db) is not None:
        kind = run.reparam_of(row.arch_id)
        lines.append(f"gain {fmt(row.psnr_gain_db, 3)} dB over bicubic (PSNR {fmt(row.psnr_db)} dB)"
                     + (f", trained re-parameterized ({escape(kind)})" if kind else ", trained plain"))
        lines.append(f"shift consistency {fmt(row.shift_consistency_db, 1)} dB, "
                     f"flicker (temporal PSNR) {fmt(row.temporal_psnr_db, 1)} dB")
    elif row.over_budget:
        lines.append("over budget: not trained")
    precision = getattr(row, "precision", "") or ""
    if precision:
        lines.append(f"precision {escape(precision)}" + (
            f": float net {fmt(row.float_gain_db, 3)} dB, post-training int8 {fmt(row.ptq_gain_db, 3)} dB, "
            f"quantization-aware {fmt(row.qat_gain_db, 3)} dB" if precision == "int8" else ""))
    if row.error:
        lines.append("error: " + escape(row.error[:200]))
    return "<br>".join(lines)


def precision_fronts(trained: pd.DataFrame, col: str) -> list[tuple[str, pd.DataFrame]]:
    """Each precision's own Pareto front, for a run that searched several (none otherwise)."""
    if "precision" not in trained:
        return []
    names = sorted({p for p in trained.precision.fillna("") if p})
    if len(names) < 2:
        return []
    return [(p, sub.iloc[pareto_front(list(zip(sub[col], sub.psnr_gain_db)))])
            for p in names for sub in [trained[trained.precision == p]]]


def _points(run: Run, rows: pd.DataFrame, y: list[Any]) -> dict[str, Any]:
    """x/y/hover/customdata for a scatter trace of trial rows (customdata = trial number, for clicks)."""
    return {"x": rows[run.latency_column].tolist(), "y": y,
            "text": [_hover(run, r) for r in rows.itertuples()],
            "customdata": rows.number.tolist(),
            "hovertemplate": "%{text}<extra></extra>"}


# Reference labels are placed in lanes above their markers so that no two overlap. The plot's pixel size is
# not known before the browser lays it out: these are conservative guesses (a narrower, shorter plot than
# the page's), so that labels kept apart here are apart on screen (tests/test_report.py measures it).
PLOT_W_PX, MAIN_H_PX, STRIP_H_PX = 1000, 380, 90
CHAR_PX, LABEL_H_PX, LANE_PX, MAX_LANES = 7.0, 14, 15, 12


def label_lanes(points_px: list[tuple[float, float]], texts: list[str]) -> list[int]:
    """For labels centred above markers at ``points_px`` (x, y up, in pixels): the lane of each, the lowest
    one where its box overlaps no label placed before it (placed left to right)."""
    placed: list[tuple[float, float, float, float]] = []
    lanes = [0] * len(points_px)
    for i in sorted(range(len(points_px)), key=lambda k: points_px[k][0]):
        x, y = points_px[i]
        half = (CHAR_PX * len(texts[i]) + 8) / 2
        for lane in range(MAX_LANES):
            cy = y + 12 + lane * LANE_PX
            box = (x - half, x + half, cy - LABEL_H_PX / 2, cy + LABEL_H_PX / 2)
            if not any(box[0] < b[1] and b[0] < box[1] and box[2] < b[3] and b[2] < box[3] for b in placed):
                break
        placed.append(box)
        lanes[i] = lane
    return lanes


def _axis_range(values: list[float], log: bool, pad: float = 0.05, head: float = 0.0) -> list[float]:
    """An explicit axis range around ``values`` (log10 units on a log axis), padded, with ``head`` on top."""
    vs = [math.log10(v) for v in values] if log else list(values)
    lo, hi = min(vs), max(vs)
    span = (hi - lo) or (abs(hi) or 1.0)
    return [lo - pad * span, hi + (pad + head) * span]


def pareto_figure(run: Run) -> go.Figure:
    """Latency vs gain for trained candidates, the front, the budget, references, and a strip below
    with the over-budget (never trained) and failed trials at their latency."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    col = run.latency_column  # the statistic the budget applies to, so the budget line judges every point
    t = run.trials.dropna(subset=[col])
    trained = run.candidates()
    cands, refs = trained[trained.reference == ""], trained[trained.reference != ""]
    untrained = t[t.psnr_gain_db.isna()]
    over = untrained[untrained.over_budget & (untrained.reference == "")]
    over_refs = untrained[untrained.over_budget & (untrained.reference != "")]
    failed = untrained[~untrained.over_budget]
    budget = run.budget_ms
    base_x, base_y = baseline_points(run)  # the user's own networks (--baseline)
    xs = t[col].tolist() + ([budget] if budget else []) + base_x
    log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.03)
    front = trained.iloc[pareto_front(list(zip(trained[col], trained.psnr_gain_db)))]
    fig.add_trace(go.Scatter(name="Pareto front", mode="lines", line={"color": VERMILION, "width": 2, "shape": "hv"},
                             x=front[col].tolist(), y=front.psnr_gain_db.tolist(), hoverinfo="skip"), 1, 1)
    for (name, sub), dash in zip(precision_fronts(trained, col), ("dot", "dash", "dashdot")):
        fig.add_trace(go.Scatter(name=f"Pareto front, {name} only", mode="lines",
                                 line={"color": VERMILION, "width": 1.5, "shape": "hv", "dash": dash},
                                 x=sub[col].tolist(), y=sub.psnr_gain_db.tolist(), hoverinfo="skip"), 1, 1)
    if "precision" in trained and (trained.precision == "int8").any():
        int8 = trained[trained.precision == "int8"]
        fig.add_trace(go.Scatter(name=f"int8 (scored as ONNX Runtime runs the QDQ graph) ({len(int8)})",
                                 mode="markers", marker={"symbol": "square-open", "size": 14, "color": "black"},
                                 **_points(run, int8, int8.psnr_gain_db.tolist())), 1, 1)
    fig.add_trace(go.Scatter(name=f"trained candidates ({len(cands)})", mode="markers",
                             marker={"color": BLUE, "size": 9, "opacity": 0.8, "line": {"color": "white", "width": 1}},
                             **_points(run, cands, cands.psnr_gain_db.tolist())), 1, 1)
    fig.add_trace(go.Scatter(name="reference nets", mode="markers",
                             marker={"symbol": "diamond", "size": 11, "color": GREEN,
                                     "line": {"color": "black", "width": 1}},
                             **_points(run, refs, refs.psnr_gain_db.tolist())), 1, 1)
    stopped = run.stopped()
    if len(stopped):
        fig.add_trace(go.Scatter(name=f"stopped at a rung, gain there ({len(stopped)})", mode="markers",
                                 marker={"symbol": "circle-open", "size": 8, "color": BLUE, "opacity": 0.6},
                                 **_points(run, stopped, stopped.psnr_gain_db.tolist())), 1, 1)
    win = run.winner()
    if win is not None:
        wrow = t[t.number == win.number]
        fig.add_trace(go.Scatter(name="winner", mode="markers", marker={
            "symbol": "star", "size": 20, "color": YELLOW, "line": {"color": "black", "width": 1.5}},
            **_points(run, wrow, wrow.psnr_gain_db.tolist())), 1, 1)
    add_baseline_traces(fig, run)
    fig.add_trace(go.Scatter(name=f"over budget, not trained ({len(over)})", mode="markers",
                             marker={"symbol": "x-thin", "size": 10, "color": GREY,
                                     "line": {"color": GREY, "width": 2}},
                             **_points(run, over, ["not trained"] * len(over))), 2, 1)
    if len(over_refs):
        fig.add_trace(go.Scatter(name="reference nets over budget", mode="markers",
                                 marker={"symbol": "diamond-open", "size": 11, "color": GREEN, "line": {"width": 2}},
                                 **_points(run, over_refs, ["not trained"] * len(over_refs))), 2, 1)
    if len(failed):
        fig.add_trace(go.Scatter(name=f"failed ({len(failed)})", mode="markers",
                                 marker={"symbol": "circle-open", "size": 9, "color": VERMILION},
                                 **_points(run, failed, ["failed"] * len(failed))), 2, 1)
    fig.add_hline(y=0, line={"color": "black", "dash": "dot", "width": 1}, row=1, col=1,
                  annotation_text="bicubic = 0 dB", annotation_position="bottom left")
    if budget:
        bx = math.log10(budget) if log_x else budget
        fig.add_shape(type="line", xref="x", yref="paper", x0=bx, x1=bx, y0=0, y1=1,
                      line={"color": VERMILION, "dash": "dash", "width": 2})
        fig.add_annotation(xref="x", yref="paper", x=bx, y=1, yanchor="bottom", showarrow=False,
                           text=f"budget {fmt(budget, 3)} ms", font={"color": VERMILION})
    x_range = _axis_range(xs, log_x) if xs else None
    gains = [*trained.psnr_gain_db.tolist(), 0.0, *base_y]
    y_range = _axis_range(gains, False, head=0.3)  # headroom above for the reference labels
    _label_references(fig, refs, over_refs, col, log_x, x_range, y_range)
    fig.update_xaxes(type="log" if log_x else "linear", range=x_range, row=1, col=1)
    fig.update_xaxes(type="log" if log_x else "linear", title_text=f"latency per frame, {run.latency_label} (ms)",
                     range=x_range, row=2, col=1)
    fig.update_yaxes(title_text="PSNR gain over bicubic (dB)", range=y_range, row=1, col=1)
    fig.update_yaxes(type="category", row=2, col=1)
    fig.update_layout(template="plotly_white", height=620, hovermode="closest", margin={"t": 40, "r": 20},
                      legend={"orientation": "h", "y": -0.12, "x": 0})
    return fig


def _label_references(fig: go.Figure, refs: pd.DataFrame, over_refs: pd.DataFrame, col: str, log_x: bool,
                      x_range: list[float] | None, y_range: list[float]) -> None:
    """Name every reference net with an annotation above its marker, in lanes that keep labels apart."""
    if x_range is None or not (len(refs) or len(over_refs)):
        return

    def x_px(v: float) -> float:
        x = math.log10(v) if log_x else v
        return (x - x_range[0]) / (x_range[1] - x_range[0]) * PLOT_W_PX

    points, texts, where = [], [], []
    for r in refs.itertuples():  # the main chart sits above the strip
        y = STRIP_H_PX + 20 + (r.psnr_gain_db - y_range[0]) / (y_range[1] - y_range[0]) * MAIN_H_PX
        points.append((x_px(getattr(r, col)), y))
        texts.append(str(r.reference))
        where.append(("x", "y", getattr(r, col), r.psnr_gain_db))
    for r in over_refs.itertuples():
        points.append((x_px(getattr(r, col)), STRIP_H_PX / 2))
        texts.append(str(r.reference))
        where.append(("x2", "y2", getattr(r, col), "not trained"))
    for text, lane, (xref, yref, x, y) in zip(texts, label_lanes(points, texts), where):
        fig.add_annotation(xref=xref, yref=yref, x=math.log10(x) if log_x else x, y=y, text=escape(text),
                           showarrow=True, arrowhead=0, arrowwidth=1, arrowcolor=GREY, ax=0,
                           ay=-(12 + lane * LANE_PX), font={"size": 11, "color": "#1d1d1f"},
                           bgcolor="rgba(255,255,255,0.75)")


def stability_figure(run: Run) -> go.Figure:
    """Shift consistency (and flicker, on a clip) of each trained trial against its latency."""
    import plotly.graph_objects as go

    cands = run.candidates()
    fig = go.Figure()
    for col, name, colour in (("shift_consistency_db", "shift consistency", BLUE),
                              ("temporal_psnr_db", "temporal PSNR (clip)", ORANGE)):
        rows = cands.dropna(subset=[col])
        if len(rows):
            fig.add_trace(go.Scatter(name=name, mode="markers", marker={"color": colour, "size": 8},
                                     **_points(run, rows, rows[col].tolist())))
    if run.budget_ms:
        fig.add_vline(x=run.budget_ms, line={"color": GREY, "dash": "dash"})
    fig.update_layout(template="plotly_white", height=360, margin={"t": 30, "r": 20},
                      xaxis_title=f"latency per frame, {run.latency_label} (ms)",
                      yaxis_title="dB (higher is steadier; 100 = exact)",
                      legend={"orientation": "h", "y": -0.25, "x": 0})
    return fig


def progress_figure(run: Run) -> go.Figure:
    """Gain of each trained trial against trial number, with the best so far as a step line."""
    import plotly.graph_objects as go

    t = run.trials
    cands = run.candidates()
    best, xs, ys = -math.inf, [], []
    for row in t.itertuples():
        if row.trained and number(row.stopped_at) is None and number(row.psnr_gain_db) is not None:
            best = max(best, row.psnr_gain_db)
        if best > -math.inf:
            xs.append(row.number)
            ys.append(best)
    fig = go.Figure()
    fig.add_trace(go.Scatter(name="best so far", mode="lines", x=xs, y=ys, line={"color": VERMILION, "shape": "hv"}))
    fig.add_trace(go.Scatter(name="trained (references included)", mode="markers", x=cands.number.tolist(),
                             y=cands.psnr_gain_db.tolist(), marker={"color": BLUE, "size": 7},
                             text=[_hover(run, r) for r in cands.itertuples()], customdata=cands.number.tolist(),
                             hovertemplate="%{text}<extra></extra>"))
    stopped = run.stopped()
    if len(stopped):
        fig.add_trace(go.Scatter(name="stopped at a rung (gain there)", mode="markers", x=stopped.number.tolist(),
                                 y=stopped.psnr_gain_db.tolist(),
                                 marker={"symbol": "circle-open", "color": BLUE, "size": 7},
                                 text=[_hover(run, r) for r in stopped.itertuples()],
                                 customdata=stopped.number.tolist(),
                                 hovertemplate="%{text}<extra></extra>"))
    over = t[t.over_budget]
    if len(over) and len(cands):
        fig.add_trace(go.Scatter(name="over budget (not trained)", mode="markers", x=over.number.tolist(),
                                 y=[float(cands.psnr_gain_db.min())] * len(over),
                                 marker={"symbol": "x-thin", "color": GREY, "size": 8,
                                         "line": {"color": GREY, "width": 1.5}},
                                 text=[_hover(run, r) for r in over.itertuples()], customdata=over.number.tolist(),
                                 hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(template="plotly_white", height=360, margin={"t": 30, "r": 20},
                      xaxis_title="trial number", yaxis_title="PSNR gain over bicubic (dB)",
                      legend={"orientation": "h", "y": -0.25, "x": 0})
    return fig


def roofline_figure(run: Run) -> go.Figure:
    """Measured latency against MACs, each joined to its roofline lower bound (same device)."""
    import plotly.graph_objects as go

    col = run.latency_column
    t = run.trials.dropna(subset=[col, "macs"])
    t = t[(t[col] > 0) & (t.macs > 0)]
    fig = go.Figure()
    roof = t.dropna(subset=["roofline_ms"])
    roof = roof[roof.roofline_ms > 0]
    if len(roof):
        seg_x, seg_y = [], []
        for r in roof.itertuples():
            seg_x += [r.macs, r.macs, None]
            seg_y += [r.roofline_ms, getattr(r, col), None]
        fig.add_trace(go.Scatter(name="gap to bound", mode="lines", x=seg_x, y=seg_y, hoverinfo="skip",
                                 line={"color": "#cccccc", "width": 1}))
        fig.add_trace(go.Scatter(name="roofline lower bound", mode="markers", x=roof.macs.tolist(),
                                 y=roof.roofline_ms.tolist(), marker={"symbol": "line-ew-open", "size": 12,
                                                                      "color": "black", "line": {"width": 2}},
                                 text=[f"trial {r.number}: bound {fmt(r.roofline_ms, 4)} ms, measured "
                                       f"{fmt(getattr(r, col), 3)} ms "
                                       f"({100 * r.roofline_ms / getattr(r, col):.1f} % of bound)"
                                       for r in roof.itertuples()], hovertemplate="%{text}<extra></extra>"))
    for name, rows, color, symbol in (("trained", t[t.trained & (t.reference == "")], BLUE, "circle"),
                                      ("over budget", t[t.over_budget], GREY, "x-thin"),
                                      ("reference nets", t[t.reference != ""], GREEN, "diamond")):
        if len(rows):
            fig.add_trace(go.Scatter(name=f"measured: {name}", mode="markers", x=rows.macs.tolist(),
                                     y=rows[col].tolist(), customdata=rows.number.tolist(),
                                     marker={"symbol": symbol, "color": color, "size": 8,
                                             "line": {"color": color, "width": 1.5}},
                                     text=[_hover(run, r) for r in rows.itertuples()],
                                     hovertemplate="%{text}<extra></extra>"))
    if run.budget_ms:
        fig.add_hline(y=run.budget_ms, line={"color": VERMILION, "dash": "dash"}, annotation_text="budget",
                      annotation_font_color=VERMILION)
    fig.update_layout(template="plotly_white", height=420, margin={"t": 30, "r": 20},
                      xaxis={"type": "log", "title": "MACs per frame (log)"},
                      yaxis={"type": "log", "title": f"latency per frame, {run.latency_label} (ms, log)"},
                      legend={"orientation": "h", "y": -0.2, "x": 0})
    return fig
