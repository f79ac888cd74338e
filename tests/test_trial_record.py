"""The trial record (nas/trial_record.py): what the search writes on a trial, every reader reads back typed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna

from nas.trial_record import TrialRecord, TrialRecorder, reference_attrs
from search_spaces import count, get_space


def test_what_the_recorder_writes_the_record_reads_back(tmp_path: Path) -> None:
    """A real Optuna trial, written step by step as the search does, read back from the stored trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    space = get_space("sr2x")
    spec = next(iter(space.fitting_references((32, 48))[0].values()))
    trial = study.ask()
    recorder = TrialRecorder(trial)
    recorder.claimed_by(tmp_path / "run")
    recorder.candidate(spec, count(spec, 32, 48))
    recorder.predicted(1.5)
    latency = SimpleNamespace(median_ms=1.2, p90_ms=1.4, cov=0.02, roofline_ms=0.3, cached=False, measure_s=0.5,
                              unstable=False, first_ms=1.5, visits=2,
                              to_dict=lambda: {"median_ms": 1.2, "samples_ms": [1.2, 1.3]})
    recorder.measured(latency)
    result = SimpleNamespace(psnr_db=30.0, bicubic_psnr_db=29.5, ssim=0.9, psnr_gain_db=0.5, resumed_from=None,
                             moved=True, shift_consistency_db=40.0, temporal_psnr_db=None)
    recorder.trained(result, cached=True, spent_s=0.0)
    recorder.stopped_at(30)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    record = TrialRecord.of(study.trials[0].user_attrs)
    assert record.arch_id == spec.arch_id and record.spec_json == spec.canonical_json()
    assert record.summary == spec.summary() and record.counts["macs"] == count(spec, 32, 48).macs
    assert record.belongs_to(tmp_path / "run") and not record.belongs_to(tmp_path / "other")
    assert record.predicted_ms == 1.5 and not record.predicted_over_budget
    assert record.latency["first_ms"] == 1.5 and record.latency["visits"] == 2
    assert record.latency["median_ms"] == 1.2 and record.latency_record == {"median_ms": 1.2, "samples_ms": [1.2, 1.3]}
    assert record.trained and record.train_cached and record.train["psnr_gain_db"] == 0.5
    assert record.train["train_s"] == 0.0 and record.pruned_at_step == 30 and record.error == ""


def test_a_hostile_or_empty_record_reads_as_empty() -> None:
    """The storage is shared: wrong types read as absent, never as a crash or a trusted value."""
    record = TrialRecord.of({"arch_id": 7, "spec": ["x"], "latency": "fast", "train": None, "train_cached": "yes",
                             "predicted_ms": float("nan"), "latency_record": [1], "predicted_over_budget": 1})
    assert record.arch_id == "7" and record.spec_json is None and record.latency == {} and not record.trained
    assert not record.train_cached and record.predicted_ms is None and record.latency_record is None
    assert not record.predicted_over_budget
    assert TrialRecord.of({}) == TrialRecord()
    assert TrialRecord.of(reference_attrs("espcn")).reference == "espcn"
