"""The run-dir contract (nas/rundir.py): what the writer writes the reader reads back, one winner rule,
and the budget rule as the report draws it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.errors import UsageError
from nas.rundir import RunDir, RunDirWriter, TrialRow, best_trial, trial_row
from nas.target import Budget
from nas.trial_record import TrialRecord


def write_run(path: Path, rows: list[TrialRow], budget: Budget) -> RunDir:
    writer = RunDirWriter(path)
    writer.check("s")
    writer.create()
    writer.write_trials(rows)
    writer.write_run_json({"study": "s", "config": {"budget_ms": budget.limit_ms, "budget_stat": budget.stat,
                                                    "input_size": [32, 48]}, "summary": None})
    return RunDir.load(path)


def test_the_reader_reads_back_what_the_writer_wrote(tmp_path: Path) -> None:
    rows = [
        TrialRow(number=0, state="COMPLETE", arch_id="a" * 64, reference="tiny", summary="x | y", latency_ms=1.25,
                 latency_p90_ms=1.5, trained=True, psnr_gain_db=0.5, train_cached=True, macs=1e6, worker="/w/1"),
        TrialRow(number=1, state="PRUNED", arch_id="b" * 64, latency_ms=9.0, latency_p90_ms=9.5, over_budget=True,
                 error="a, \"quoted\"\nline"),
        TrialRow(number=2, state="FAIL", arch_id="c" * 64, error="measurement failed"),
    ]
    back = write_run(tmp_path / "run", rows, Budget(4.0))
    assert [r.number for r in back.trials] == [0, 1, 2]
    assert back.trials[0] == rows[0]
    assert back.trials[1].error == rows[1].error.strip() and back.trials[1].over_budget
    assert back.trials[2].latency_ms is None and not back.trials[2].trained
    assert back.budget == Budget(4.0) and back.input_size == (32, 48)


def test_trial_rows_apply_the_budget_statistic() -> None:
    record = TrialRecord.of({"arch_id": "a", "latency": {"median_ms": 3.0, "p90_ms": 5.0}, "run_dir": "/w"})
    assert not trial_row(0, "COMPLETE", record, Budget(4.0, "median")).over_budget
    assert trial_row(0, "PRUNED", record, Budget(4.0, "p90")).over_budget
    unknown = TrialRecord.of({"arch_id": "a"})
    assert trial_row(0, "FAIL", unknown, Budget(4.0)).over_budget is False  # unknown is not over
    assert trial_row(0, "COMPLETE", record, Budget(4.0)).worker == "/w"


def test_one_winner_rule() -> None:
    def row(n: int, gain: float | None, lat: float, state: str = "COMPLETE") -> TrialRow:
        return TrialRow(number=n, state=state, arch_id=str(n), latency_ms=lat, trained=gain is not None,
                        psnr_gain_db=gain)

    assert best_trial([]) is None
    assert best_trial([row(0, None, 1.0, "PRUNED")]) is None
    rows = [row(0, 0.5, 2.0), row(1, 0.9, 3.0), row(2, 0.9, 2.5), row(3, 1.5, 1.0, "FAIL"), row(4, 0.9, 2.5)]
    assert best_trial(rows).number == 2  # highest gain; tie -> lower latency, then the earlier trial


@pytest.mark.parametrize("breakage", ["no run.json", "bad number", "run.json not an object"])
def test_a_malformed_run_dir_is_a_usage_error(tmp_path: Path, breakage: str) -> None:
    run = write_run(tmp_path / "run", [TrialRow(number=0)], Budget(1.0)).path
    if breakage == "no run.json":
        (run / "run.json").unlink()
    elif breakage == "bad number":
        (run / "trials.csv").write_text("number,arch_id,latency_ms,over_budget,trained,psnr_gain_db\nx,a,,,,\n")
    else:
        (run / "run.json").write_text(json.dumps([1, 2]))
    with pytest.raises(UsageError):
        RunDir.load(run)


def test_the_report_plots_the_budget_statistic_against_the_budget_line(tmp_path: Path) -> None:
    """With --budget-stat p90, a trial whose median is under the budget but whose p90 is over sits right of
    the budget line (it was over budget), and one under on p90 sits left of it."""
    from nas.report import load_run, pareto_figure

    rows = [TrialRow(number=0, state="COMPLETE", arch_id="a" * 64, latency_ms=2.0, latency_p90_ms=3.0,
                     trained=True, psnr_gain_db=0.4),
            TrialRow(number=1, state="PRUNED", arch_id="b" * 64, latency_ms=3.5, latency_p90_ms=4.5,
                     over_budget=True)]
    write_run(tmp_path / "run", rows, Budget(4.0, "p90"))
    fig = pareto_figure(load_run(tmp_path / "run"))
    xs = {trace.name: list(trace.x) for trace in fig.data if trace.x is not None and len(trace.x)}
    assert xs["trained candidates (1)"] == [3.0]
    assert xs["over budget, not trained (1)"] == [4.5]
    budget_line = next(s for s in fig.layout.shapes if s.line.dash == "dash")
    assert budget_line.x0 == 4.0 and all(x > 4.0 for x in xs["over budget, not trained (1)"])
    assert "p90" in fig.layout.xaxis2.title.text
