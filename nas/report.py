"""The Pareto report: one self-contained HTML file a reviewer can pick a network from.

``write_report(run_dir)`` reads a run dir (docs/run_dir.md) and writes ``run_dir/report.html``:
plotly.js inline, every figure and every detail embedded, nothing fetched over the network, so the
file opens offline and can be mailed around. Everything read from the run dir is user input: text
goes into the page through ``html.escape`` or as JSON that cannot close its ``<script>`` element,
and arch ids are checked before they become paths.

plotly, pandas, torch and PIL are imported inside the functions that need them: this module is
loaded only by ``nas report`` and at the end of ``nas search``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from search_spaces import ArchSpec

REPORT_NAME = "report.html"
PNG_NAME = "pareto.png"
REQUIRED_COLUMNS = ("number", "arch_id", "latency_ms", "over_budget", "trained", "psnr_gain_db")
NUMERIC_COLUMNS = ("number", "latency_ms", "latency_p90_ms", "latency_cov", "roofline_ms", "psnr_db",
                   "bicubic_psnr_db", "psnr_gain_db", "ssim", "shift_consistency_db", "temporal_psnr_db",
                   "measure_s", "train_s", "macs", "params", "bytes_moved")
BOOL_COLUMNS = ("over_budget", "trained", "latency_cached", "train_cached")
TEXT_COLUMNS = ("state", "arch_id", "reference", "summary", "error")
_ARCH_ID = re.compile(r"^[0-9A-Za-z_-]{1,128}$")  # sha256 hex in practice; never a path separator
TOP_N = 10
CROP = 96  # side of the ground-truth crop shown, in output pixels

# Colours: Okabe-Ito (readable with colour-blindness), one meaning each across all figures.
BLUE, ORANGE, GREEN, VERMILION, GREY, YELLOW = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#8c8c8c", "#F0E442"
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False,
               "toImageButtonOptions": {"format": "png", "scale": 2}}


@dataclass
class Run:
    """A run dir as read for the report: run.json, trials.csv and the per-arch files that exist."""

    path: Path
    meta: dict[str, Any]
    trials: pd.DataFrame
    specs: dict[str, ArchSpec] = field(default_factory=dict)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # unreadable per-arch files, shown in the page

    @property
    def budget_ms(self) -> float | None:
        return _num(_dict(self.meta.get("config")).get("budget_ms"))

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """Low-resolution input (H, W) from the workload, else from the config."""
        wl = _dict(self.meta.get("workload"))
        h, w = _int(wl.get("height")), _int(wl.get("width"))
        if h and w:
            return h, w
        size = _dict(self.meta.get("config")).get("input_size")
        if isinstance(size, list) and len(size) == 2 and all(_int(v) for v in size):
            return int(size[0]), int(size[1])
        return None

    def summary_of(self, row: Any) -> str:
        """One-line architecture: from the validated arch.json, else the CSV's text (raw, escape it)."""
        spec = self.specs.get(row.arch_id)
        return spec.summary() if spec is not None else str(row.summary or "(no arch.json)")

    def candidates(self) -> pd.DataFrame:
        """Trials that were trained and have a gain, reference nets included (the search enqueues them
        as trials, so one can win)."""
        t = self.trials
        return t[t.trained & t.psnr_gain_db.notna() & t.latency_ms.notna()]

    def winner(self) -> Any | None:
        """The run's best trial (run.json summary.best), else the candidate with the highest gain."""
        best = _dict(_dict(self.meta.get("summary")).get("best"))
        number = _int(best.get("trial"))
        cands = self.candidates()
        if number is not None:
            hit = cands[cands.number == number]
            if len(hit):
                return next(hit.itertuples())
        if not len(cands):
            return None
        return next(cands.sort_values(["psnr_gain_db", "latency_ms"], ascending=[False, True]).itertuples())


# ---------------------------------------------------------------------- small helpers
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN, bool)."""
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any) -> int | None:
    f = _num(value)
    return int(f) if f is not None and f == int(f) else None


def _pairs(value: Any) -> list[list[float]]:
    """A curve [[step, value], ...] with finite numbers only; anything else gives an empty curve."""
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if isinstance(item, (list, tuple)) and len(item) >= 2:
            x, y = _num(item[0]), _num(item[1])
            if x is not None and y is not None:
                out.append([x, y])
    return out


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 2, unit: str = "") -> str:
    f = _num(value)
    return "n/a" if f is None else f"{f:.{digits}f}{unit}"


def _si(value: Any, unit: str) -> str:
    """1234567 -> '1.23 M' + unit."""
    f = _num(value)
    if f is None:
        return "n/a"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(f) >= factor:
            return f"{f / factor:.3g} {prefix}{unit}"
    return f"{f:.0f} {unit}"


def _script_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' survive literally."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# ---------------------------------------------------------------------- reading the run dir
def load_run(run_dir: Path) -> Run:
    """Read and check a run dir; a missing or malformed run.json / trials.csv raises UsageError."""
    import pandas as pd

    from search_spaces import SpecError, load_spec

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run dir {run_dir} does not exist (give the --run-dir of a finished nas search)")
    meta_path, csv_path = run_dir / "run.json", run_dir / "trials.csv"
    for p in (meta_path, csv_path):
        if not p.is_file():
            raise UsageError(f"{run_dir} is not a run dir: {p.name} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{meta_path} is not readable JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{meta_path} must hold a JSON object")
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' ParserError/EmptyDataError are ValueErrors
        raise UsageError(f"{csv_path} is not a readable CSV file: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise UsageError(f"{csv_path} lacks the column(s) {', '.join(missing)} (see docs/run_dir.md)")
    trials = pd.DataFrame(index=raw.index)
    for col in NUMERIC_COLUMNS:
        trials[col] = pd.to_numeric(raw[col], errors="coerce") if col in raw else float("nan")
    bad = trials.number.isna()
    if bad.any():
        raise UsageError(f"{csv_path}: column 'number' must hold trial numbers (row {int(bad.idxmax()) + 2})")
    trials["number"] = trials.number.astype(int)
    for col in BOOL_COLUMNS:
        trials[col] = raw[col].str.strip().str.lower().eq("true") if col in raw else False
    for col in TEXT_COLUMNS:
        trials[col] = raw[col].str.strip() if col in raw else ""
    run = Run(path=run_dir, meta=meta, trials=trials.sort_values("number").reset_index(drop=True))

    for arch_id in sorted(set(run.trials.arch_id)):
        if not _ARCH_ID.match(arch_id):
            run.problems.append(f"arch id {arch_id[:80]!r} is not a plain identifier: its files were not read")
            continue
        folder = run_dir / "archs" / arch_id
        if (folder / "arch.json").is_file():
            try:
                run.specs[arch_id] = load_spec(str(folder / "arch.json"))
            except SpecError as exc:
                run.problems.append(str(exc))
        for name, target in (("latency.json", run.latency), ("train.json", run.train)):
            if (folder / name).is_file():
                try:
                    data = json.loads((folder / name).read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                    run.problems.append(f"archs/{arch_id}/{name}: {exc}")
                    continue
                if isinstance(data, dict):
                    target[arch_id] = data
    return run


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


def layer_table(spec: ArchSpec, height: int, width: int) -> list[dict[str, Any]]:
    """Every op of the network in order, with output shape, MACs and parameters per layer.

    Mirrors search_spaces.network (and search_spaces.counting, whose MAC total it must equal).
    """
    rows: list[dict[str, Any]] = []
    c, f, s = spec.in_channels, spec.space_to_depth, spec.scale

    def add(stage: str, op: str, cin: int, cout: int, h: int, w: int, macs: int = 0, params: int = 0) -> None:
        rows.append({"stage": stage, "op": op, "in": cin, "out": cout, "shape": f"{cout}x{h}x{w}",
                     "macs": macs, "params": params})

    def conv(stage: str, cin: int, cout: int, k: int, h: int, w: int, stride: int = 1, note: str = "") -> None:
        ho, wo = h // stride, w // stride
        op = f"conv {k}x{k}" + (f" stride {stride}" if stride > 1 else "") + note
        add(stage, op, cin, cout, ho, wo, ho * wo * cin * cout * k * k, cout * cin * k * k + cout)

    def stage(name: str, cin: int, layers: tuple, h: int, w: int) -> int:
        for i, layer in enumerate(layers):
            skip = " + ReLU + skip" if spec.skip == "add" and cin == layer.width else " + ReLU"
            conv(f"{name}[{i}]", cin, layer.width, layer.kernel, h, w, note=skip)
            cin = layer.width
        return cin

    H, W = height, width
    if spec.upsample != "identity":
        add("base", f"{spec.upsample} x{s}", 3, 3, H * s, W * s)
    if spec.color == "luma":
        add("luma", "fixed 1x1 RGB->Y", 3, 1, H, W, 3 * H * W, 0)
    h, w = H // f, W // f
    if f > 1:
        add("entry", f"space-to-depth {f}", c, c * f * f, h, w)
    cin = stage("head", c * f * f, spec.head, h, w)

    def level(i: int, cin: int, h: int, w: int) -> None:
        lv = spec.levels[i]
        conv(f"down{i + 1}", cin, lv.width, 2, h, w, stride=2, note=" + ReLU")
        inner = stage(f"level{i + 1}", lv.width, lv.body, h // 2, w // 2)
        if i + 1 < len(spec.levels):
            level(i + 1, inner, h // 2, w // 2)
        conv(f"up{i + 1}", inner, 4 * cin, lv.up_kernel, h // 2, w // 2)
        add(f"up{i + 1}", "depth-to-space 2 + skip + ReLU", 4 * cin, cin, h, w)

    if spec.levels:
        level(0, cin, h, w)
    cin = stage("tail", cin, spec.tail, h, w)
    out_ch = c * (s * f) ** 2
    conv("output", cin, out_ch, spec.output_kernel, h, w)
    if s * f > 1:
        add("output", f"depth-to-space {s * f}", out_ch, c, H * s, W * s)
    add("output", "base + residual", c, 3, H * s, W * s)
    return rows


# ---------------------------------------------------------------------- figures
def _hover(run: Run, row: Any) -> str:
    """Hover text for one trial; every piece from the run dir is escaped."""
    lines = [f"<b>trial {row.number}</b>" + (f" ({_e(row.reference)})" if row.reference else ""),
             _e(run.summary_of(row)),
             f"latency {_fmt(row.latency_ms, 3)} ms median, {_fmt(row.latency_p90_ms, 3)} ms p90",
             f"{_si(row.macs, 'MAC')}, {_si(row.params, 'params')}"]
    if _num(row.psnr_gain_db) is not None:
        lines.append(f"gain {_fmt(row.psnr_gain_db, 3)} dB over bicubic (PSNR {_fmt(row.psnr_db)} dB)")
        lines.append(f"shift consistency {_fmt(row.shift_consistency_db, 1)} dB, "
                     f"flicker (temporal PSNR) {_fmt(row.temporal_psnr_db, 1)} dB")
    elif row.over_budget:
        lines.append("over budget: not trained")
    if row.error:
        lines.append("error: " + _e(row.error[:200]))
    return "<br>".join(lines)


def _points(run: Run, rows: pd.DataFrame, y: list[Any]) -> dict[str, Any]:
    """x/y/hover/customdata for a scatter trace of trial rows (customdata = trial number, for clicks)."""
    return {"x": rows.latency_ms.tolist(), "y": y,
            "text": [_hover(run, r) for r in rows.itertuples()],
            "customdata": rows.number.tolist(),
            "hovertemplate": "%{text}<extra></extra>"}


def pareto_figure(run: Run) -> go.Figure:
    """Latency vs gain for trained candidates, the front, the budget, references, and a strip below
    with the over-budget (never trained) and failed trials at their latency."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t = run.trials.dropna(subset=["latency_ms"])
    trained = run.candidates()
    cands, refs = trained[trained.reference == ""], trained[trained.reference != ""]
    untrained = t[t.psnr_gain_db.isna()]
    over = untrained[untrained.over_budget & (untrained.reference == "")]
    over_refs = untrained[untrained.over_budget & (untrained.reference != "")]
    failed = untrained[~untrained.over_budget]
    budget = run.budget_ms
    xs = t.latency_ms.tolist() + ([budget] if budget else [])
    log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.03)
    front = trained.iloc[pareto_front(list(zip(trained.latency_ms, trained.psnr_gain_db)))]
    fig.add_trace(go.Scatter(name="Pareto front", mode="lines", line={"color": VERMILION, "width": 2, "shape": "hv"},
                             x=front.latency_ms.tolist(), y=front.psnr_gain_db.tolist(), hoverinfo="skip"), 1, 1)
    fig.add_trace(go.Scatter(name=f"trained candidates ({len(cands)})", mode="markers",
                             marker={"color": BLUE, "size": 9, "opacity": 0.8, "line": {"color": "white", "width": 1}},
                             **_points(run, cands, cands.psnr_gain_db.tolist())), 1, 1)
    fig.add_trace(go.Scatter(name="reference nets", mode="markers+text", textposition="top center",
                             marker={"symbol": "diamond", "size": 11, "color": GREEN, "line": {"color": "black", "width": 1}},
                             **{**_points(run, refs, refs.psnr_gain_db.tolist()), "text": [_e(r) for r in refs.reference],
                                "hovertext": [_hover(run, r) for r in refs.itertuples()],
                                "hovertemplate": "%{hovertext}<extra></extra>"}), 1, 1)
    win = run.winner()
    if win is not None:
        wrow = t[t.number == win.number]
        fig.add_trace(go.Scatter(name="winner", mode="markers", marker={
            "symbol": "star", "size": 20, "color": YELLOW, "line": {"color": "black", "width": 1.5}},
            **_points(run, wrow, wrow.psnr_gain_db.tolist())), 1, 1)
    fig.add_trace(go.Scatter(name=f"over budget, not trained ({len(over)})", mode="markers",
                             marker={"symbol": "x-thin", "size": 10, "color": GREY, "line": {"color": GREY, "width": 2}},
                             **_points(run, over, ["not trained"] * len(over))), 2, 1)
    if len(over_refs):
        fig.add_trace(go.Scatter(name="reference nets over budget", mode="markers+text", textposition="top center",
                                 marker={"symbol": "diamond-open", "size": 11, "color": GREEN, "line": {"width": 2}},
                                 **{**_points(run, over_refs, ["not trained"] * len(over_refs)),
                                    "text": [_e(r) for r in over_refs.reference],
                                    "hovertext": [_hover(run, r) for r in over_refs.itertuples()],
                                    "hovertemplate": "%{hovertext}<extra></extra>"}), 2, 1)
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
                           text=f"budget {_fmt(budget, 3)} ms", font={"color": VERMILION})
    fig.update_xaxes(type="log" if log_x else "linear", row=1, col=1)
    fig.update_xaxes(type="log" if log_x else "linear", title_text="latency per frame, median (ms)", row=2, col=1)
    fig.update_yaxes(title_text="PSNR gain over bicubic (dB)", row=1, col=1)
    fig.update_yaxes(type="category", row=2, col=1)
    fig.update_layout(template="plotly_white", height=620, hovermode="closest", margin={"t": 40, "r": 20},
                      legend={"orientation": "h", "y": -0.12, "x": 0})
    return fig


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
                      xaxis_title="latency median (ms)", yaxis_title="dB (higher is steadier; 100 = exact)",
                      legend={"orientation": "h", "y": -0.25, "x": 0})
    return fig


def progress_figure(run: Run) -> go.Figure:
    """Gain of each trained trial against trial number, with the best so far as a step line."""
    import plotly.graph_objects as go

    t = run.trials
    cands = run.candidates()
    best, xs, ys = -math.inf, [], []
    for row in t.itertuples():
        if row.trained and _num(row.psnr_gain_db) is not None:
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
    over = t[t.over_budget]
    if len(over) and len(cands):
        fig.add_trace(go.Scatter(name="over budget (not trained)", mode="markers", x=over.number.tolist(),
                                 y=[float(cands.psnr_gain_db.min())] * len(over),
                                 marker={"symbol": "x-thin", "color": GREY, "size": 8, "line": {"color": GREY, "width": 1.5}},
                                 text=[_hover(run, r) for r in over.itertuples()], customdata=over.number.tolist(),
                                 hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(template="plotly_white", height=360, margin={"t": 30, "r": 20},
                      xaxis_title="trial number", yaxis_title="PSNR gain over bicubic (dB)",
                      legend={"orientation": "h", "y": -0.25, "x": 0})
    return fig


def roofline_figure(run: Run) -> go.Figure:
    """Measured latency against MACs, each joined to its roofline lower bound (same device)."""
    import plotly.graph_objects as go

    t = run.trials.dropna(subset=["latency_ms", "macs"])
    t = t[(t.latency_ms > 0) & (t.macs > 0)]
    fig = go.Figure()
    roof = t.dropna(subset=["roofline_ms"])
    roof = roof[roof.roofline_ms > 0]
    if len(roof):
        seg_x, seg_y = [], []
        for r in roof.itertuples():
            seg_x += [r.macs, r.macs, None]
            seg_y += [r.roofline_ms, r.latency_ms, None]
        fig.add_trace(go.Scatter(name="gap to bound", mode="lines", x=seg_x, y=seg_y, hoverinfo="skip",
                                 line={"color": "#cccccc", "width": 1}))
        fig.add_trace(go.Scatter(name="roofline lower bound", mode="markers", x=roof.macs.tolist(),
                                 y=roof.roofline_ms.tolist(), marker={"symbol": "line-ew-open", "size": 12,
                                                                      "color": "black", "line": {"width": 2}},
                                 text=[f"trial {r.number}: bound {_fmt(r.roofline_ms, 4)} ms, measured "
                                       f"{_fmt(r.latency_ms, 3)} ms ({100 * r.roofline_ms / r.latency_ms:.1f} % of bound)"
                                       for r in roof.itertuples()], hovertemplate="%{text}<extra></extra>"))
    for name, rows, color, symbol in (("trained", t[t.trained & (t.reference == "")], BLUE, "circle"),
                                      ("over budget", t[t.over_budget], GREY, "x-thin"),
                                      ("reference nets", t[t.reference != ""], GREEN, "diamond")):
        if len(rows):
            fig.add_trace(go.Scatter(name=f"measured: {name}", mode="markers", x=rows.macs.tolist(),
                                     y=rows.latency_ms.tolist(), customdata=rows.number.tolist(),
                                     marker={"symbol": symbol, "color": color, "size": 8, "line": {"color": color, "width": 1.5}},
                                     text=[_hover(run, r) for r in rows.itertuples()], hovertemplate="%{text}<extra></extra>"))
    if run.budget_ms:
        fig.add_hline(y=run.budget_ms, line={"color": VERMILION, "dash": "dash"}, annotation_text="budget",
                      annotation_font_color=VERMILION)
    fig.update_layout(template="plotly_white", height=420, margin={"t": 30, "r": 20},
                      xaxis={"type": "log", "title": "MACs per frame (log)"},
                      yaxis={"type": "log", "title": "latency per frame (ms, log)"},
                      legend={"orientation": "h", "y": -0.2, "x": 0})
    return fig


# ---------------------------------------------------------------------- the validation crops
def _validation_image(scale: int) -> tuple[Any, str]:
    """The first image of the default validation split (nas.data), centre-cropped as validation
    crops it, as a (1, 3, H, W) float tensor in [0, 1], and its name."""
    import skimage.data as skdata
    import torch

    from nas.data import DEFAULT_VAL, val_crop

    name = DEFAULT_VAL[0]
    hr8 = torch.from_numpy(getattr(skdata, name)().copy()).permute(2, 0, 1)
    top, left, lr_h, lr_w = val_crop(hr8.shape[1], hr8.shape[2], scale)
    hr8 = hr8[:, top:top + lr_h * scale, left:left + lr_w * scale]
    return hr8[None].float() / 255, f"scikit-image '{name}' (validation split), {lr_w * scale}x{lr_h * scale} centre crop"


def _png_b64(t: Any) -> str:
    import numpy as np
    from PIL import Image

    arr = (t[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def winner_crops(run: Run) -> dict[str, Any]:
    """Bicubic / winner / ground truth on a crop of a validation image, as base64 PNGs.

    Computed here from the winner's weights on the default validation image, degraded the way
    training validates (antialiased bicubic downscale, rounded to 8 bits). The crop is the window where bicubic errs most (most detail), not where the
    winner gains most. Returns {"error": text} when it cannot be shown.
    """
    import torch
    import torch.nn.functional as F

    from search_spaces import build

    win = run.winner()
    if win is None:
        return {"error": "no trained candidate, so no winner to show"}
    spec = run.specs.get(win.arch_id)
    weights = run.path / "archs" / win.arch_id / "weights.safetensors"
    if spec is None or not weights.is_file():
        return {"error": f"trial {win.number}: arch.json or weights.safetensors missing from the run dir"}
    if spec.space != "sr":
        return {"error": "validation crops are drawn for super-resolution runs only"}
    from safetensors.torch import load_file

    try:
        net = build(spec)
        net.load_state_dict(load_file(str(weights)))
    except (OSError, RuntimeError, ValueError) as exc:  # bad file or shapes that do not match the spec
        return {"error": f"trial {win.number}: weights do not load into its spec: {str(exc)[:300]}"}
    from nas.data import make_lr
    from nas.metrics import psnr as psnr_db
    from nas.train import baseline

    s = spec.scale
    hr, source = _validation_image(s)
    with torch.no_grad():
        lr = make_lr((hr[0] * 255).round().to(torch.uint8), s)[None].float() / 255  # as training validates
        bic = baseline(lr, "sr", s)
        out = net(lr).clamp(0, 1)

    def psnr(a: Any) -> float:
        return float(psnr_db(a, hr, border=s)[0])

    err = F.avg_pool2d((bic - hr).abs().mean(1, keepdim=True), CROP, stride=CROP // 4)
    iy, ix = divmod(int(err.flatten().argmax()), err.shape[3])
    y, x = iy * CROP // 4, ix * CROP // 4

    def crop(t: Any) -> str:
        return _png_b64(t[:, :, y:y + CROP, x:x + CROP])

    return {"source": source, "trial": int(win.number), "scale": s, "box": [y, x, CROP],
            "images": [("bicubic", crop(bic), psnr(bic)), (f"winner (trial {win.number})", crop(out), psnr(out)),
                       ("ground truth", crop(hr), None)]}


# ---------------------------------------------------------------------- the page
def _kv_table(items: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f"<table class='kv'>{rows}</table>"


def _flat(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A dict as (key, value) pairs; nested dicts become dotted keys, lists compact JSON."""
    out: list[tuple[str, Any]] = []
    for k, v in _dict(d).items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        elif v is not None and v != "":
            out.append((f"{prefix}{k}", v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)))
    return out


def _protocol(run: Run) -> list[tuple[str, Any]]:
    """The timing protocol: run.json's, else what the winner's (or any) latency.json states."""
    proto = run.meta.get("protocol")
    if proto:
        return _flat(proto) if isinstance(proto, dict) else [("protocol", proto)]
    win = run.winner()
    lat = run.latency.get(win.arch_id) if win is not None else None
    lat = lat or next(iter(run.latency.values()), {})
    items = [(k, lat[k]) for k in ("protocol", "backend", "backend_version", "precision", "n_samples")
             if isinstance(lat.get(k), (str, int, float)) and not isinstance(lat.get(k), bool)]
    samples = lat.get("samples_ms")
    if "n_samples" not in lat and isinstance(samples, list):
        items.append(("samples per candidate", len(samples)))
    items.append(("budget statistic", _dict(run.meta.get("config")).get("budget_stat", "median")))
    return items


def _header(run: Run) -> str:
    cfg, summ = _dict(run.meta.get("config")), _dict(run.meta.get("summary"))
    t = run.trials
    win = run.winner()
    task = cfg.get("task", "?")
    device = _dict(run.meta.get("device"))
    device_name = next((str(device[k]) for k in ("device", "gpu_name", "name", "cpu_model")
                        if isinstance(device.get(k), str) and device[k]), "unknown device")
    title = (f"nas report: {task}, budget {_fmt(run.budget_ms, 3)} ms on {device_name} "
             f"({run.meta.get('backend', cfg.get('backend', '?'))})")
    if win is not None:
        ref = f" (reference {win.reference})" if win.reference else ""
        verdict = (f"Winner: trial {win.number}{ref}, {win.psnr_gain_db:+.2f} dB over bicubic at "
                   f"{_fmt(win.latency_ms, 3)} ms median ({_fmt(win.latency_p90_ms, 3)} ms p90), "
                   f"{_si(win.macs, 'MAC')}, {_si(win.params, 'params')}. {run.summary_of(win)}")
    else:
        verdict = "No candidate met the budget and trained: there is no winner."
    n = summ.get("n_trials", len(t))
    counts = [("trials", n), ("trained", summ.get("n_trained", int(t.trained.sum()))),
              ("over budget (not trained)", summ.get("n_over_budget", int(t.over_budget.sum()))),
              ("failed", summ.get("n_failed", int((t.state == "FAIL").sum()))),
              ("latency cache hits", summ.get("n_latency_cache_hits", int(t.latency_cached.sum()))),
              ("training cache hits", summ.get("n_train_cache_hits", int(t.train_cached.sum())))]
    times = [("measuring", _fmt(summ.get("measure_s", t.measure_s.sum()), 1, " s")),
             ("training", _fmt(summ.get("train_s", t.train_s.sum()), 1, " s")),
             ("wall clock", _fmt(summ.get("wall_s"), 1, " s")),
             ("created", run.meta.get("created", "?")), ("nas", run.meta.get("nas_version", "?"))]
    workload = _flat(run.meta.get("workload"))
    argv = run.meta.get("argv")
    cmd = " ".join(str(a) for a in argv) if isinstance(argv, list) else ""
    boxes = [("Device", _flat(device)), ("Backend and versions",
                                          [("backend", run.meta.get("backend", cfg.get("backend", "?")))]
                                          + _flat(run.meta.get("versions"))),
             ("Latency protocol", _protocol(run)), ("Workload", workload),
             ("Search", [("budget", f"{_fmt(run.budget_ms, 3)} ms ({cfg.get('budget_stat', 'median')})")]
              + counts), ("Time", times)]
    grid = "".join(f"<div class='box'><h3>{_e(name)}</h3>{_kv_table(items)}</div>" for name, items in boxes)
    return (f"<h1>{_e(title)}</h1><p class='verdict'>{_e(verdict)}</p>"
            + (f"<p class='cmd'><code>{_e(cmd)}</code></p>" if cmd else "")
            + f"<div class='grid'>{grid}</div>")


def _top_table(run: Run) -> str:
    t = run.trials
    top = run.candidates().sort_values(["psnr_gain_db", "latency_ms"], ascending=[False, True]).head(TOP_N)
    refs = t[(t.reference != "") & ~t.number.isin(top.number)]
    win = run.winner()
    head = ("<tr><th>rank</th><th>trial</th><th>gain (dB)</th><th>PSNR (dB)</th><th>SSIM</th>"
            "<th>shift consistency (dB)</th><th>temporal PSNR (dB)</th><th>latency median (ms)</th><th>p90 (ms)</th><th>MACs</th><th>params</th>"
            "<th>architecture</th><th>arch id</th></tr>")

    def row(rank: str, r: Any) -> str:
        cls = " class='winner'" if win is not None and r.number == win.number else ""
        return (f"<tr{cls} data-trial='{int(r.number)}'><td>{_e(rank)}</td><td>{int(r.number)}</td>"
                f"<td>{_fmt(r.psnr_gain_db, 3)}</td><td>{_fmt(r.psnr_db)}</td><td>{_fmt(r.ssim, 4)}</td>"
                f"<td>{_fmt(r.shift_consistency_db, 1)}</td><td>{_fmt(r.temporal_psnr_db, 1)}</td>"
                f"<td>{_fmt(r.latency_ms, 3)}</td><td>{_fmt(r.latency_p90_ms, 3)}</td>"
                f"<td>{_si(r.macs, 'MAC')}</td><td>{_si(r.params, '')}</td>"
                f"<td class='arch'>{_e(('[' + r.reference + '] ') if r.reference else '')}{_e(run.summary_of(r))}</td><td><code>{_e(r.arch_id[:12])}</code></td></tr>")

    body = "".join(row(str(i + 1), r) for i, r in enumerate(top.itertuples()))
    body += "".join(row("over budget" if r.over_budget else "ref", r) for r in refs.itertuples())
    return f"<table class='top' id='top-table'>{head}{body}</table>"


def _crops_html(crops: dict[str, Any]) -> str:
    if "error" in crops:
        return f"<p class='note'>{_e(crops['error'])}</p>"
    y, x, size = crops["box"]
    figs = "".join(
        f"<figure><img alt='{_e(name)}' src='data:image/png;base64,{b64}'>"
        f"<figcaption>{_e(name)}" + (f"<br>{psnr:.2f} dB PSNR (whole crop)" if psnr is not None else "")
        + "</figcaption></figure>"
        for name, b64, psnr in crops["images"])
    return (f"<p class='note'>{_e(crops['source'])}, downscaled x{crops['scale']} with antialiased bicubic "
            f"(8-bit), upscaled back by bicubic and by the winner. Crop: {size}x{size} px at (y {y}, x {x}), the window "
            f"where bicubic errs most, shown at 3x with no smoothing.</p><div class='crops'>{figs}</div>")


def _details_data(run: Run) -> dict[str, Any]:
    """Per-trial and per-arch data the click handler renders (no HTML: the script sets textContent)."""
    hw = run.input_hw
    archs: dict[str, Any] = {}
    for arch_id in sorted(set(run.trials.arch_id)):
        spec, lat, tr = run.specs.get(arch_id), run.latency.get(arch_id, {}), run.train.get(arch_id, {})
        raw = lat.get("samples_ms") if isinstance(lat.get("samples_ms"), list) else []
        samples = [float(f"{v:.5g}") for v in (_num(x) for x in raw) if v is not None]  # 5 digits: ample for a histogram
        archs[arch_id] = {
            "layers": layer_table(spec, *hw) if spec is not None and hw else [],
            "samples": samples,
            "loss": _pairs(tr.get("loss_curve")),
            "val": _pairs(tr.get("val_curve")),
            "unstable": bool(lat.get("unstable")) if isinstance(lat.get("unstable"), bool) else None,
            "moved": tr.get("moved") if isinstance(tr.get("moved"), bool) else None,
        }
    trials = {}
    for r in run.trials.itertuples():
        trials[str(int(r.number))] = {
            "number": int(r.number), "arch_id": r.arch_id, "reference": r.reference, "state": r.state,
            "summary": run.summary_of(r), "error": r.error,
            **{k: _num(getattr(r, k)) for k in ("latency_ms", "latency_p90_ms", "latency_cov", "psnr_gain_db",
                                                "psnr_db", "macs", "params", "train_s")},
            "over_budget": bool(r.over_budget), "trained": bool(r.trained)}
    win = run.winner()
    return {"trials": trials, "archs": archs, "winner": int(win.number) if win is not None else None,
            "input": list(hw) if hw else None, "budget_ms": run.budget_ms}


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1280px;padding:16px 24px;color:#1d1d1f;background:#fff}
h1{font-size:1.45em;margin:.2em 0}h2{font-size:1.15em;margin:1.6em 0 .3em;border-bottom:1px solid #ddd}
h3{font-size:.95em;margin:.2em 0 .4em;color:#333}
.verdict{font-size:1.05em;background:#fff8d6;border-left:4px solid #E69F00;padding:8px 12px}
.cmd code{font-size:.85em;color:#444;word-break:break-all}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:10px}
.box{border:1px solid #e3e3e3;border-radius:6px;padding:6px 10px;overflow:hidden}
table{border-collapse:collapse;font-size:.85em}
table.kv th{text-align:left;font-weight:600;padding:1px 8px 1px 0;color:#555;vertical-align:top;white-space:nowrap}
table.kv td{word-break:break-word}
table.top,table.layers{width:100%}
table.top th,table.top td,table.layers th,table.layers td{border-bottom:1px solid #eee;padding:3px 6px;text-align:right}
table.top th{background:#f4f6f8;position:sticky;top:0}
table.top td,table.layers td{white-space:nowrap}
table.top td.arch{white-space:normal}
table.top td.arch,table.layers td.l{text-align:left;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
table.top tr.winner{background:#fff8d6;font-weight:600}
table.top tr[data-trial]{cursor:pointer}table.top tr[data-trial]:hover{background:#eef5fb}
.note{color:#555;font-size:.9em}
.hint{color:#555;font-size:.9em;margin:.2em 0}
#details{border:1px solid #cfd8e3;border-radius:6px;padding:8px 12px;background:#fbfcfe}
#details .cols{display:grid;grid-template-columns:1fr 1fr;gap:10px}
#details .plot{height:300px}
.crops{display:flex;gap:16px;flex-wrap:wrap}
.crops figure{margin:0}.crops img{width:288px;height:288px;image-rendering:pixelated;border:1px solid #ccc}
.crops figcaption{font-size:.9em;text-align:center}
.problems{color:#a33}
"""

# The click handler: reads the embedded JSON and builds DOM with textContent only (never innerHTML).
SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("nas-data").textContent);
  var CFG = {displaylogo: false, responsive: true};
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fmt(v, d) { return (v === null || v === undefined) ? "n/a" : Number(v).toFixed(d); }
  function si(v) {
    if (v === null || v === undefined) return "n/a";
    var u = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < u.length; i++) if (Math.abs(v) >= u[i][0]) return (v / u[i][0]).toPrecision(3) + " " + u[i][1];
    return String(v);
  }
  function show(number) {
    var t = D.trials[String(number)];
    if (!t) return;
    var a = D.archs[t.arch_id] || {layers: [], samples: [], loss: [], val: []};
    var box = document.getElementById("details");
    box.textContent = "";
    var title = "Trial " + t.number + (t.reference ? " (reference " + t.reference + ")" : "") +
      (t.number === D.winner ? " (winner)" : "");
    box.appendChild(el("h3", title));
    box.appendChild(el("p", t.summary, "l"));
    var facts = "latency " + fmt(t.latency_ms, 3) + " ms median, " + fmt(t.latency_p90_ms, 3) + " ms p90, CoV " +
      (t.latency_cov === null ? "n/a" : (100 * t.latency_cov).toFixed(1) + " %") + (a.unstable ? " (unstable)" : "") +
      "; " + si(t.macs) + "MAC, " + si(t.params) + " params; " +
      (t.psnr_gain_db !== null ? "gain " + fmt(t.psnr_gain_db, 3) + " dB over bicubic" +
        (t.train_s !== null ? ", trained in " + fmt(t.train_s, 1) + " s" : "") +
        (a.moved === false ? " (training did not move: a training failure)" : "")
       : (t.over_budget ? "over budget: never trained" : "not trained")) +
      (t.error ? "; error: " + t.error : "") + "; arch id " + t.arch_id;
    box.appendChild(el("p", facts, "note"));
    var cols = el("div", null, "cols");
    var left = el("div"), right = el("div");
    cols.appendChild(left); cols.appendChild(right);
    box.appendChild(cols);
    left.appendChild(el("h3", "Layers" + (D.input ? " (input " + D.input[0] + "x" + D.input[1] + ")" : "")));
    if (a.layers.length) {
      var tb = el("table", null, "layers"), hr = el("tr");
      ["stage", "op", "in ch", "out ch", "output CxHxW", "MACs", "params"].forEach(function (h) { hr.appendChild(el("th", h)); });
      tb.appendChild(hr);
      a.layers.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", r.stage, "l")); tr.appendChild(el("td", r.op, "l"));
        tr.appendChild(el("td", r["in"])); tr.appendChild(el("td", r.out)); tr.appendChild(el("td", r.shape));
        tr.appendChild(el("td", r.macs ? si(r.macs) : "")); tr.appendChild(el("td", r.params ? r.params : ""));
        tb.appendChild(tr);
      });
      left.appendChild(tb);
    } else {
      left.appendChild(el("p", "No valid arch.json for this trial.", "note"));
    }
    var h = el("div", null, "plot"); h.id = "detail-hist"; right.appendChild(h);
    var c = el("div", null, "plot"); c.id = "detail-curve"; right.appendChild(c);
    if (a.samples.length) {
      var sorted = a.samples.slice().sort(function (x, y) { return x - y; });
      var cut = 3 * sorted[Math.floor(sorted.length / 2)];
      var shown = a.samples.filter(function (v) { return v <= cut; });
      var off = a.samples.length - shown.length;
      Plotly.newPlot(h, [{type: "histogram", x: shown, marker: {color: "#0072B2"}, name: "samples"}],
        {title: {text: "Latency samples (" + a.samples.length + (off ? ", " + off + " above 3x median not shown" : "") + ")" +
         (D.budget_ms ? ", budget " + fmt(D.budget_ms, 3) + " ms" : "")},
         xaxis: {title: {text: "ms per frame"}}, yaxis: {title: {text: "count"}}, margin: {t: 40, r: 10, b: 45, l: 50},
         bargap: 0.05}, CFG);
    } else {
      h.appendChild(el("p", "No latency samples stored for this trial.", "note"));
    }
    if (a.loss.length || a.val.length) {
      var tr = [];
      if (a.loss.length) tr.push({type: "scatter", mode: "lines", name: "training loss", line: {color: "#0072B2"},
        x: a.loss.map(function (p) { return p[0]; }), y: a.loss.map(function (p) { return p[1]; })});
      if (a.val.length) tr.push({type: "scatter", mode: "lines+markers", name: "validation gain (dB)", yaxis: "y2",
        line: {color: "#D55E00"}, x: a.val.map(function (p) { return p[0]; }), y: a.val.map(function (p) { return p[1]; })});
      Plotly.newPlot(c, tr, {title: {text: "Training curve"}, margin: {t: 40, r: 70, b: 45, l: 55},
        xaxis: {title: {text: "step"}}, yaxis: {title: {text: "loss"}, type: "log"},
        yaxis2: {title: {text: "gain over bicubic (dB)"}, overlaying: "y", side: "right", showgrid: false,
                 tickformat: ".2f", nticks: 5},
        legend: {orientation: "h", y: -0.25}}, CFG);
    } else {
      c.appendChild(el("p", t.over_budget ? "Over budget: never trained, so no training curve." :
        "No training curve stored for this trial.", "note"));
    }
  }
  ["pareto", "stability", "progress", "roofline"].forEach(function (id) {
    var gd = document.getElementById(id);
    if (gd && gd.on) gd.on("plotly_click", function (ev) {
      var p = ev && ev.points && ev.points[0];
      if (p && p.customdata !== undefined && p.customdata !== null) {
        show(p.customdata);
        document.getElementById("details").scrollIntoView({behavior: "smooth", block: "nearest"});
      }
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("#top-table tr[data-trial]"), function (tr) {
    tr.addEventListener("click", function () { show(Number(tr.getAttribute("data-trial"))); });
  });
  if (D.winner !== null) show(D.winner);
  window.nasShowTrial = show;
})();
"""


def render_html(run: Run, crops: dict[str, Any] | None = None) -> str:
    """The whole page as one string: plotly.js, figures, tables, crops and the click handler inline."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    def fig_div(fig: go.Figure, div_id: str) -> str:
        return pio.to_html(fig, include_plotlyjs=False, full_html=False, include_mathjax=False,
                           div_id=div_id, config=PLOT_CONFIG, default_width="100%",
                           default_height=f"{fig.layout.height}px")

    crops = crops if crops is not None else winner_crops(run)
    task = _dict(run.meta.get("config")).get("task", "run")
    problems = ("<h2>Problems reading the run dir</h2><ul class='problems'>"
                + "".join(f"<li>{_e(p)}</li>" for p in run.problems) + "</ul>") if run.problems else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nas report: {_e(task)}</title>
<style>{CSS}</style>
<script>{get_plotlyjs()}</script>
</head><body>
{_header(run)}
<h2>Pareto front: quality against latency</h2>
<p class="hint">Each point is one architecture, measured untrained on the target device; only those under
the budget were trained. Hover for the architecture, click for its layers, latency samples and training curve.
The strip below the chart shows the candidates the latency gate rejected before any training.</p>
{fig_div(pareto_figure(run), "pareto")}
<h2>Details of the selected trial</h2>
<div id="details"><p class="note">Click a point or a table row.</p></div>
<h2>Top candidates</h2>
<p class="hint">The best trained candidates under the budget by PSNR gain over bicubic (reference networks,
run through the same pipeline on the same device, in [brackets]), then the references that did not make it.
Click a row for details.</p>
{_top_table(run)}
<h2>Validation crops: bicubic, winner, ground truth</h2>
{_crops_html(crops)}
<h2>Temporal stability against latency</h2>
<p class="hint">Shift consistency: a validation crop and the same crop moved by one input pixel, upscaled, the
second moved back and compared (dB, like PSNR; 100 = the output moves exactly with the content). Low scores
flicker under a camera pan. Temporal PSNR (with --val-sequence): how far the change between consecutive outputs
departs from the change between consecutive targets.</p>
{fig_div(stability_figure(run), "stability")}
<h2>Search progress</h2>
<p class="hint">Gain of each trained candidate by trial number; the line is the best feasible gain so far.</p>
{fig_div(progress_figure(run), "progress")}
<h2>Latency against MACs, with the roofline bound</h2>
<p class="hint">Measured median latency (markers) above the roofline lower bound max(FLOPs / peak FLOP/s,
bytes moved / memory bandwidth) of the same network (black ticks, where the device's peaks are known).
A long grey gap means launch or memory overheads dominate, not arithmetic.</p>
{fig_div(roofline_figure(run), "roofline")}
{problems}
<script type="application/json" id="nas-data">{_script_json(_details_data(run))}</script>
<script>{SCRIPT}</script>
</body></html>
"""


def write_pareto_png(run: Run, path: Path) -> None:
    """Static PNG of the Pareto chart through kaleido (needs kaleido and a Chrome/Chromium)."""
    pareto_figure(run).write_image(str(path), width=1200, height=620, scale=2)


def write_report(run_dir: Path, png: bool = False) -> Path:
    """Write ``run_dir/report.html`` (and ``pareto.png`` with ``png``); return the HTML's path.

    A missing or malformed run dir raises UsageError. When the PNG cannot be made (no kaleido or
    no browser for it) a warning goes to stderr and the HTML is still written.
    """
    run = load_run(Path(run_dir))
    out = run.path / REPORT_NAME
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_html(run), encoding="utf-8")
    tmp.replace(out)
    if png:
        try:
            import kaleido  # noqa: F401  (optional: `pip install nas[png]`)
        except ImportError:
            print("nas report: warning: no PNG written: kaleido is not installed "
                  "(pip install 'nas[png]'; it also needs Chrome or Chromium); the HTML report was written",
                  file=sys.stderr)
            return out
        try:
            write_pareto_png(run, run.path / PNG_NAME)
        except Exception as exc:  # noqa: BLE001  (kaleido raises assorted errors when it finds no browser)
            print(f"nas report: warning: no PNG written: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                  "; the HTML report was written", file=sys.stderr)
    return out
