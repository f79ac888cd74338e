"""The hardware sweet-spot probe: latency of one conv layer and of a 3-layer block as the channel
count steps (8..256 by 8 by default), at one resolution, on one backend; every point is stored.

Where the steps and cliffs lie (tensor-core tile sizes, cache capacity, vector width) is what a
designer wants to know before choosing widths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from latency_db.candidates import ConvProbe, counts_for, workload_for
from latency_db.measure import measure_or_get

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from latency_db.backends import Backend
    from latency_db.store import LatencyStore

SWEEP_LAYERS = (1, 3)  # one conv layer; a 3-layer block


def run_sweep(backend: Backend, store: LatencyStore, height: int, width: int, channels: range,
              kernel: int = 3, progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One row per (layers, channels): median/p10/p90 ms, effective GFLOP/s, cached, error."""
    rows = []
    for layers in SWEEP_LAYERS:
        for c in channels:
            probe = ConvProbe(channels=c, layers=layers, kernel=kernel)
            workload = workload_for(probe, height, width, backend.default_io_dtype)
            r = measure_or_get(probe, workload, backend, store)
            flops = counts_for(probe, workload).flops
            row = {"layers": layers, "channels": c, "kernel": kernel, "median_ms": r.median_ms,
                   "p10_ms": r.p10_ms, "p90_ms": r.p90_ms, "cov": r.cov, "unstable": r.unstable,
                   "gflops": (flops / (r.median_ms * 1e6)) if r.median_ms else None,
                   "roofline_ms": r.roofline_ms, "cached": r.cached, "error": r.error, "arch_id": probe.arch_id}
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


def sweep_figure(rows: list[dict[str, Any]], title: str) -> go.Figure:
    """Latency (with p10-p90 bars) and effective GFLOP/s against channels, one line per block size."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("median latency (bars: p10-p90)", "effective throughput"))
    for layers in SWEEP_LAYERS:
        pts = [r for r in rows if r["layers"] == layers and r["median_ms"] is not None]
        name = "1 conv layer" if layers == 1 else f"{layers}-layer block"
        x = [r["channels"] for r in pts]
        fig.add_trace(go.Scatter(
            x=x, y=[r["median_ms"] for r in pts], mode="lines+markers", name=name, legendgroup=name,
            error_y={"type": "data", "symmetric": False,
                     "array": [r["p90_ms"] - r["median_ms"] for r in pts],
                     "arrayminus": [r["median_ms"] - r["p10_ms"] for r in pts]}), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[r["gflops"] for r in pts], mode="lines+markers", name=name,
                                 legendgroup=name, showlegend=False), row=2, col=1)
    fig.update_yaxes(title_text="ms", row=1, col=1)
    fig.update_yaxes(title_text="GFLOP/s", row=2, col=1)
    fig.update_xaxes(title_text="channels (C -> C, same at every layer)", row=2, col=1)
    fig.update_layout(title=title, height=800, hovermode="x unified")
    return fig
