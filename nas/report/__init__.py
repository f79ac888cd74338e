"""The Pareto report: one self-contained HTML file a reviewer can pick a network from.

``write_report(run_dir)`` reads a run dir through nas.rundir and writes ``run_dir/report.html``.
The package: ``run`` (the run dir as the report reads it), ``figures`` (Plotly charts), ``crops``
(the winner's validation crops), ``page`` (tables and the HTML page), ``assets/`` (its CSS and
JavaScript, inlined). plotly, pandas, torch and PIL load inside the functions that need them.
"""

from __future__ import annotations

from nas.report.crops import winner_crops
from nas.report.figures import pareto_figure, pareto_front, progress_figure, roofline_figure, stability_figure
from nas.report.page import PNG_NAME, REPORT_NAME, layer_table, render_html, write_pareto_png, write_report
from nas.report.run import Run, load_run

__all__ = ["PNG_NAME", "REPORT_NAME", "Run", "layer_table", "load_run", "pareto_figure", "pareto_front",
           "progress_figure", "render_html", "roofline_figure", "stability_figure", "winner_crops", "write_pareto_png",
           "write_report"]
