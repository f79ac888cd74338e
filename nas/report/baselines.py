"""The user's own networks (``--baseline``) on the Pareto chart: as given, and retrained like the candidates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas.report.text import escape, fmt

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from nas.report.run import Run

ORANGE = "#E69F00"
VIEWS = (("pretrained", "as given (its own weights)", "hexagon"),
         ("retrained", "retrained with the search's short training", "hexagon-open"),
         ("retrained_final", "retrained as long as the finalists", "hexagon-open-dot"))


def baseline_points(run: Run) -> tuple[list[float], list[float]]:
    """Every baseline view's latency and gain (for the axes' ranges)."""
    xs, ys = [], []
    for b in run.dir.baselines:
        x = b[run.latency_column]
        for view, _, _ in VIEWS:
            if x is not None and b[f"{view}_gain_db"] is not None:
                xs.append(x)
                ys.append(b[f"{view}_gain_db"])
    return xs, ys


def add_baseline_traces(fig: go.Figure, run: Run) -> None:
    """One trace per view: the baselines at their latency, named, with both gains in the hover."""
    import plotly.graph_objects as go

    col, found = run.latency_column, run.dir.baselines
    for view, what, symbol in VIEWS:
        shown = [b for b in found if b[col] is not None and b[f"{view}_gain_db"] is not None]
        if not shown:
            continue
        hover = [f"<b>{escape(b['name'])}</b> (your network, {escape(b['channels'])})<br>"
                 f"{fmt(b[col], 3)} ms<br>as given: {fmt(b['pretrained_gain_db'], 2, ' dB')}<br>"
                 f"retrained: {fmt(b['retrained_gain_db'], 2, ' dB')}"
                 + (f", {fmt(b['retrained_final_gain_db'], 2, ' dB')} after {b['retrained_final_steps']} steps"
                    if b["retrained_final_gain_db"] is not None else "")
                 + (f" (does not convert: {escape(b['retrained_note'])})" if b["retrained_note"] else "")
                 for b in shown]
        fig.add_trace(go.Scatter(
            name=f"your networks, {what}", mode="markers+text", text=[b["name"] for b in shown],
            textposition="top center", hovertext=hover, hoverinfo="text",
            marker={"symbol": symbol, "size": 13, "color": ORANGE, "line": {"color": "black", "width": 1}},
            x=[b[col] for b in shown], y=[b[f"{view}_gain_db"] for b in shown]), 1, 1)


def baselines_section(run: Run) -> str:
    """The baselines' table (nothing when the run has none)."""
    found = run.dir.baselines
    if not found:
        return ""
    names = [t["name"] for t in run.targets]   # a --target run: each target's latency, measured on its devices
    final = any(b["retrained_final_gain_db"] is not None for b in found)  # a search whose finalists trained longer
    head = ("<tr><th>your network</th><th>input</th><th>latency median (ms)</th><th>p90 (ms)</th>"
            + "".join(f"<th>on {escape(n)} (ms)</th>" for n in names)
            + "<th>gain as given (dB)</th><th>gain retrained (dB)</th>"
            + ("<th>retrained as long as the finalists (dB)</th>" if final else "") + "<th>graph id</th></tr>")
    body = "".join(
        f"<tr><td>{escape(b['name'])}</td><td>{escape(b['channels'])}</td><td>{fmt(b['latency_ms'], 3)}</td>"
        f"<td>{fmt(b['latency_p90_ms'], 3)}</td>"
        + "".join(f"<td>{fmt(b['target_ms'].get(n), 3)}</td>" for n in names)
        + f"<td>{fmt(b['pretrained_gain_db'], 3)}</td>"
        f"<td>{fmt(b['retrained_gain_db'], 3)}"
        + (f" (does not convert: {escape(b['retrained_note'])})" if b["retrained_note"] else "") + "</td>"
        + (f"<td>{fmt(b['retrained_final_gain_db'], 3)}</td>" if final else "")
        + f"<td><code>{escape(b['arch_id'][:17])}</code></td></tr>" for b in found)
    return ("<h2>Your networks (--baseline)</h2><p class='hint'>Timed on the same device with the same protocol "
            "(keyed by the graph's content); judged on the same validation crops with the same metric, as given "
            "(your weights) and retrained from scratch with the search's short training (and, in a search whose "
            "finalists trained longer, as long as they did), so that architectures compare on equal training.</p>"
            f"<table class='top' id='baseline-table'>{head}{body}</table>")
