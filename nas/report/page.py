"""The report page: the header, the tables, the layer table (from the plan) and the HTML around the figures.

Everything read from the run dir is user input: text goes into the page through ``html.escape`` or
as JSON that cannot close its ``<script>`` element, and arch ids are checked before they become
paths. The page is one file: plotly.js, the figures, the crops, the CSS and the script inline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces.plan import (
    CONV,
    DEPTH_TO_SPACE,
    LONG_SKIP,
    LUMA,
    MERGE,
    RESIDUAL,
    RESIZE,
    SPACE_TO_DEPTH,
    WHITEN,
    Op,
    plan,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from search_spaces import ArchSpec

from nas.report.baselines import baselines_section
from nas.report.crops import winner_crops
from nas.report.figures import pareto_figure, progress_figure, roofline_figure, stability_figure
from nas.report.run import Run, load_run
from nas.report.targets import targets_section
from nas.report.text import escape, fmt, pairs, script_json, si
from nas.rundir import as_dict, number

REPORT_NAME = "report.html"
PNG_NAME = "pareto.png"
TOP_N = 10
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False,
               "toImageButtonOptions": {"format": "png", "scale": 2}}

ASSETS = Path(__file__).with_name("assets")  # report.css and report.js: package data, inlined into the page


def _asset(name: str) -> str:
    """A stylesheet or script of the page (the click handler builds DOM with textContent only)."""
    return (ASSETS / name).read_text(encoding="utf-8")


def _op_text(op: Op) -> str:
    """How the layer table names one op of the plan."""
    if op.kind == CONV:
        text = f"conv {op.kernel}x{op.kernel}" + (f" stride {op.stride}" if op.stride > 1 else "")
        return text + (" + ReLU + skip" if op.residual else " + ReLU" if op.relu else "")
    return {RESIZE: "classical upsample", LUMA: "fixed 1x1 RGB->Y", WHITEN: "whiten (x - 0.5)",
            SPACE_TO_DEPTH: "space-to-depth", MERGE: "depth-to-space 2 + skip + ReLU",
            LONG_SKIP: "long skip: + head1's output",
            DEPTH_TO_SPACE: "depth-to-space", RESIDUAL: "base + residual"}.get(op.kind, op.kind)


def layer_table(spec: ArchSpec, height: int, width: int) -> list[dict[str, Any]]:
    """Every op of the network in order (search_spaces.plan), with output shape, MACs and parameters."""
    rows = []
    for op in plan(spec, height, width):
        text = _op_text(op)
        if op.kind == RESIZE:
            text = f"{spec.upsample} x{spec.scale}"
        elif op.kind == SPACE_TO_DEPTH:
            text = f"{text} {spec.space_to_depth}"
        elif op.kind == DEPTH_TO_SPACE:
            text = f"{text} {spec.scale * spec.space_to_depth}"
        rows.append({"stage": op.stage, "op": text, "in": op.cin, "out": op.cout, "shape": op.shape,
                     "macs": op.macs, "params": op.params})
    return rows


# ---------------------------------------------------------------------- the page
def _kv_table(items: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
    return f"<table class='kv'>{rows}</table>"


def _flat(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A dict as (key, value) pairs; nested dicts become dotted keys, lists compact JSON."""
    out: list[tuple[str, Any]] = []
    for k, v in as_dict(d).items():
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
    items.append(("budget statistic", as_dict(run.meta.get("config")).get("budget_stat", "median")))
    return items


def _header(run: Run) -> str:
    cfg, summ = as_dict(run.meta.get("config")), as_dict(run.meta.get("summary"))
    t = run.trials
    win = run.winner()
    task = cfg.get("task", "?")
    device = as_dict(run.meta.get("device"))
    device_name = next((str(device[k]) for k in ("device", "gpu_name", "name", "cpu_model")
                        if isinstance(device.get(k), str) and device[k]), "unknown device")
    title = (f"nas report: {task}, budget {fmt(run.budget_ms, 3)} ms on {device_name} "
             f"({run.meta.get('backend', cfg.get('backend', '?'))})")
    if win is not None:
        ref = f" (reference {win.reference})" if win.reference else ""
        final = "" if number(getattr(win, "final_psnr_gain_db", None)) is None else \
            f" ({win.final_psnr_gain_db:+.2f} dB after the finalists' {int(win.final_steps)}-step training)"
        verdict = (f"Winner: trial {win.number}{ref}, {win.psnr_gain_db:+.2f} dB over bicubic{final} at "
                   f"{fmt(win.latency_ms, 3)} ms median ({fmt(win.latency_p90_ms, 3)} ms p90), "
                   f"{si(win.macs, 'MAC')}, {si(win.params, 'params')}. {run.summary_of(win)}")
    else:
        verdict = "No candidate met the budget and trained: there is no winner."
    n = summ.get("n_trials", len(t))
    counts = [("trials", n), ("trained", summ.get("n_trained", int(t.trained.sum()))),
              ("over budget (not trained)", summ.get("n_over_budget", int(t.over_budget.sum()))),
              ("stopped at a rung (pruner)", summ.get("n_stopped", int(t.stopped_at.notna().sum()))),
              ("failed", summ.get("n_failed", int((t.state == "FAIL").sum()))),
              ("latency cache hits", summ.get("n_latency_cache_hits", int(t.latency_cached.sum()))),
              ("training cache hits", summ.get("n_train_cache_hits", int(t.train_cached.sum())))]
    times = [("measuring", fmt(summ.get("measure_s", t.measure_s.sum()), 1, " s")),
             ("training", fmt(summ.get("train_s", t.train_s.sum()), 1, " s")),
             ("wall clock", fmt(summ.get("wall_s"), 1, " s")),
             ("created", run.meta.get("created", "?")), ("nas", run.meta.get("nas_version", "?"))]
    workload = _flat(run.meta.get("workload"))
    argv = run.meta.get("argv")
    cmd = " ".join(str(a) for a in argv) if isinstance(argv, list) else ""
    boxes = [("Device", _flat(device)), ("Backend and versions",
                                          [("backend", run.meta.get("backend", cfg.get("backend", "?"))),
                                           *_flat(run.meta.get("versions"))]),
             ("Latency protocol", _protocol(run)), ("Workload", workload),
             ("Search", [("budget", f"{fmt(run.budget_ms, 3)} ms ({cfg.get('budget_stat', 'median')})"),
                         *counts]), ("Time", times)]
    grid = "".join(f"<div class='box'><h3>{escape(name)}</h3>{_kv_table(items)}</div>" for name, items in boxes)
    return (f"<h1>{escape(title)}</h1><p class='verdict'>{escape(verdict)}</p>"
            + (f"<p class='cmd'><code>{escape(cmd)}</code></p>" if cmd else "")
            + f"<div class='grid'>{grid}</div>")


def _top_table(run: Run) -> str:
    t = run.trials
    top = run.candidates().sort_values(["psnr_gain_db", "latency_ms"], ascending=[False, True]).head(TOP_N)
    refs = t[(t.reference != "") & ~t.number.isin(top.number)]
    win = run.winner()
    head = ("<tr><th>rank</th><th>trial</th><th>gain (dB)</th><th>finalist's gain (dB, steps)</th>"
            "<th>PSNR (dB)</th><th>SSIM</th>"
            "<th>shift consistency (dB)</th><th>temporal PSNR (dB)</th>"
            "<th>latency median (ms)</th><th>p90 (ms)</th><th>first estimate (ms)</th><th>MACs</th><th>params</th>"
            "<th>architecture</th><th>arch id</th></tr>")

    def final_cell(r: Any) -> str:
        gain, steps = getattr(r, "final_psnr_gain_db", None), getattr(r, "final_steps", None)
        return "" if number(steps) is None else f"{fmt(gain, 3)} ({int(steps)})"

    def verified_mark(r: Any) -> str:
        return " (verified)" if getattr(r, "verified", False) else ""

    def row(rank: str, r: Any) -> str:
        cls = " class='winner'" if win is not None and r.number == win.number else ""
        return (f"<tr{cls} data-trial='{int(r.number)}'><td>{escape(rank)}</td><td>{int(r.number)}</td>"
                f"<td>{fmt(r.psnr_gain_db, 3)}</td><td>{final_cell(r)}</td>"
                f"<td>{fmt(r.psnr_db)}</td><td>{fmt(r.ssim, 4)}</td>"
                f"<td>{fmt(r.shift_consistency_db, 1)}</td><td>{fmt(r.temporal_psnr_db, 1)}</td>"
                f"<td>{fmt(r.latency_ms, 3)}</td><td>{fmt(r.latency_p90_ms, 3)}</td>"
                f"<td>{fmt(getattr(r, 'latency_first_ms', None), 3)}{verified_mark(r)}</td>"
                f"<td>{si(r.macs, 'MAC')}</td><td>{si(r.params, '')}</td>"
                f"<td class='arch'>{escape(('[' + r.reference + '] ') if r.reference else '')}"
                f"{escape(run.summary_of(r))}</td><td><code>{escape(r.arch_id[:12])}</code></td></tr>")

    body = "".join(row(str(i + 1), r) for i, r in enumerate(top.itertuples()))
    body += "".join(row("over budget" if r.over_budget else "ref", r) for r in refs.itertuples())
    return f"<table class='top' id='top-table'>{head}{body}</table>"


def _crops_html(crops: dict[str, Any]) -> str:
    if "error" in crops:
        return f"<p class='note'>{escape(crops['error'])}</p>"
    y, x, size = crops["box"]
    figs = "".join(
        f"<figure><img alt='{escape(name)}' src='data:image/png;base64,{b64}'>"
        f"<figcaption>{escape(name)}" + (f"<br>{psnr:.2f} dB PSNR (whole crop)" if psnr is not None else "")
        + "</figcaption></figure>"
        for name, b64, psnr in crops["images"])
    return (f"<p class='note'>{escape(crops['source'])}, downscaled x{crops['scale']} with antialiased bicubic "
            f"(8-bit), upscaled back by bicubic and by the winner. Crop: {size}x{size} px at (y {y}, x {x}), "
            f"the window where bicubic errs most, shown at 3x with no smoothing.</p><div class='crops'>{figs}</div>")


def details_data(run: Run) -> dict[str, Any]:
    """Per-trial and per-arch data the click handler renders (no HTML: the script sets textContent)."""
    hw = run.input_hw
    archs: dict[str, Any] = {}
    for arch_id in sorted(set(run.trials.arch_id)):
        spec, lat, tr = run.specs.get(arch_id), run.latency.get(arch_id, {}), run.train.get(arch_id, {})
        raw = lat.get("samples_ms") if isinstance(lat.get("samples_ms"), list) else []
        # 5 digits: ample for a histogram
        samples = [float(f"{v:.5g}") for v in (number(x) for x in raw) if v is not None]
        archs[arch_id] = {
            "layers": layer_table(spec, *hw) if spec is not None and hw else [],
            "samples": samples,
            "loss": pairs(tr.get("loss_curve")),
            "val": pairs(tr.get("val_curve")),
            "unstable": bool(lat.get("unstable")) if isinstance(lat.get("unstable"), bool) else None,
            "moved": tr.get("moved") if isinstance(tr.get("moved"), bool) else None,
            "reparam": run.reparam_of(arch_id),
        }
    trials = {}
    for r in run.trials.itertuples():
        trials[str(int(r.number))] = {
            "number": int(r.number), "arch_id": r.arch_id, "reference": r.reference, "state": r.state,
            "summary": run.summary_of(r), "error": r.error,
            **{k: number(getattr(r, k)) for k in ("latency_ms", "latency_p90_ms", "latency_cov", "psnr_gain_db",
                                                "psnr_db", "macs", "params", "train_s", "stopped_at")},
            "over_budget": bool(r.over_budget), "trained": bool(r.trained)}
    win = run.winner()
    return {"trials": trials, "archs": archs, "winner": int(win.number) if win is not None else None,
            "input": list(hw) if hw else None, "budget_ms": run.budget_ms}


def render_html(run: Run, crops: dict[str, Any] | None = None) -> str:
    """The whole page as one string: plotly.js, figures, tables, crops and the click handler inline."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    def fig_div(fig: go.Figure, div_id: str) -> str:
        return pio.to_html(fig, include_plotlyjs=False, full_html=False, include_mathjax=False,
                           div_id=div_id, config=PLOT_CONFIG, default_width="100%",
                           default_height=f"{fig.layout.height}px")

    crops = crops if crops is not None else winner_crops(run)
    task = as_dict(run.meta.get("config")).get("task", "run")
    problems = ("<h2>Problems reading the run dir</h2><ul class='problems'>"
                + "".join(f"<li>{escape(p)}</li>" for p in run.problems) + "</ul>") if run.problems else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nas report: {escape(task)}</title>
<style>{_asset('report.css')}</style>
<script>{get_plotlyjs()}</script>
</head><body>
{_header(run)}
<h2>Pareto front: quality against latency</h2>
<p class="hint">Each point is one architecture, measured untrained on the target device; only those under
the budget were trained. Hover for the architecture, click for its layers, latency samples and training curve.
The strip below the chart shows the candidates the latency gate rejected before any training.</p>
{fig_div(pareto_figure(run), "pareto")}
{targets_section(run, fig_div)}
<h2>Details of the selected trial</h2>
<div id="details"><p class="note">Click a point or a table row.</p></div>
<h2>Top candidates</h2>
<p class="hint">The best trained candidates under the budget by PSNR gain over bicubic (reference networks,
run through the same pipeline on the same device, in [brackets]), then the references that did not make it.
Click a row for details.</p>
{_top_table(run)}
{baselines_section(run)}
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
<script type="application/json" id="nas-data">{script_json(details_data(run))}</script>
<script>{_asset('report.js')}</script>
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
