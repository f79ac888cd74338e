"""Measuring and judging the baselines of a search (or of a finished run, for ``nas report``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from latency_db.measure import LatencyResult
    from latency_db.store import LatencyStore
    from latency_db.workload import Workload
    from nas.baseline.load import Baseline
    from nas.search.targets import TargetSet
    from nas.target import Target
    from nas.training.data import TaskData
    from nas.training.train_cache import TrainCache


def latency_of(b: Baseline, target: Target, store: LatencyStore) -> dict[str, Any]:
    """The graph's latency on the target's backend, with the search's protocol, cache first (keyed by content).
    Windowed CPU protocols visit the row until it settles, as the search's verified trials are."""
    from latency_db.measure import settle_all

    workload = _workload(b, target)
    return _latency(settle_all([(b.graph, workload)], target.backend, store)[0], None, workload)


def _latency(result: LatencyResult | None, error: str | None, workload: Workload) -> dict[str, Any]:
    """run.json's ``latency`` of a baseline, from its measurement (None: the job failed without a row)."""
    if result is None:
        return {"median_ms": None, "p90_ms": None, "error": error, "workload": workload.to_dict()}
    return {"median_ms": result.median_ms, "p90_ms": result.p90_ms, "cov": result.cov, "visits": result.visits,
            "cached": result.cached, "error": result.error, "backend": result.backend,
            "protocol": result.protocol, "workload": workload.to_dict()}


def latency_on_targets(b: Baseline, target: Target, targets: TargetSet) -> tuple[dict[str, Any], dict[str, Any]]:
    """The graph's latency on every ``--target`` (the agents' targets by a graph job, docs/agents.md): the first
    target's as the baseline's latency, as a trial's is, and each target's under ``latency_ms@NAME`` (the budget's
    statistic) and ``targets`` (the fields a trial record keeps)."""
    from nas.rundir import TARGET_PREFIX
    from nas.trial_record import TARGET_FIELDS

    workload = _workload(b, target)
    outcomes = targets.measure_graph(b.graph, workload)
    first = next(iter(outcomes.values()))
    per_target = {TARGET_PREFIX + name: o.value for name, o in outcomes.items()}
    per_target["targets"] = {name: {k: getattr(o, k) for k in TARGET_FIELDS} for name, o in outcomes.items()}
    return _latency(first.result, first.error, workload), per_target


def evaluate(baselines: list[Baseline], target: Target, data: TaskData, store: LatencyStore,
             say: Callable[[str], None], targets: TargetSet | None = None, cache: TrainCache | None = None,
             final_steps: int | None = None) -> list[dict[str, Any]]:
    """run.json's ``baselines``: each graph's latency (on every target of a ``--target`` search), its quality as
    the user has it, and retrained (through the training ``cache`` when given); with ``final_steps`` (a search with
    finalists, or the bench's long training) retrained again that long, under ``retrained_final``."""
    from dataclasses import replace

    from latency_db.candidates import counts_for
    from nas.baseline.quality import pretrained, retrained

    records = []
    for b in baselines:
        say(f"baseline {b.name}: measuring {b.path} ({b.kind}, {b.graph.io_dtype}, x{b.graph.scale})")
        if targets is None:
            latency, per_target = latency_of(b, target, store), {}
        else:
            latency, per_target = latency_on_targets(b, target, targets)
        counts = counts_for(b.graph, _workload(b, target))
        mine = pretrained(b, data, target.train_config)
        again = final = None
        if b.converts:
            say(f"baseline {b.name}: retraining from scratch, {target.train_config.steps} steps")
            again = retrained(b, data, target.train_config, target.device, cache)
            if final_steps:
                say(f"baseline {b.name}: retraining from scratch again, {final_steps} steps (the longer training)")
                final = retrained(b, data, replace(target.train_config, steps=final_steps), target.device, cache)
        else:
            say(f"baseline {b.name}: does not convert to PyTorch ({b.note}): shown as the user has it only")
        records.append({
            "name": b.name, "file": str(b.path), "arch_id": b.graph.arch_id, "channels": b.kind,
            "io_dtype": b.graph.io_dtype, "scale": b.graph.scale,
            "latency_ms": latency["median_ms"], "latency_p90_ms": latency["p90_ms"], "latency": latency, **per_target,
            "macs": counts.macs, "params": counts.params,
            "pretrained": mine, "retrained": again, "retrained_note": b.note,
            **({"retrained_final": final} if final_steps else {}),
        })
        shown = "n/a" if latency["median_ms"] is None else f"{latency['median_ms']:.3f} ms"
        if per_target:
            shown = ", ".join(("n/a" if o["ms"] is None else f"{o['ms']:.3f} ms") + f" on {name}"
                              + (f" ({o['error']})" if o["error"] else "") for name, o in per_target["targets"].items())
        again_txt = "not retrained" if again is None else f"retrained {again['psnr_gain_db']:+.2f} dB"
        if final is not None:
            again_txt += f", {final['psnr_gain_db']:+.2f} dB after {final_steps} steps"
        say(f"baseline {b.name}: {shown}, as given {mine['psnr_gain_db']:+.2f} dB, {again_txt}")
    return records


def _workload(b: Baseline, target: Target) -> Workload:
    """The graph's input at the search's size, in its own channels and IO dtype."""
    from latency_db.candidates import workload_for

    h, w = target.input_size
    return workload_for(b.graph, h, w, b.graph.io_dtype)


def run_target(run_dir: Path, latency_db: str | None) -> Target:
    """The target a finished run searched for, from its run.json (``nas report --baseline``): the same task,
    backend, input size, data and short training. UsageError when this machine is not the run's device."""
    from nas.errors import UsageError
    from nas.rundir import RunDir, as_dict, integer, number
    from nas.target import Budget, Target

    rd = RunDir.load(run_dir)
    c, train = rd.config, as_dict(rd.meta.get("train_config"))
    if rd.input_size is None or not isinstance(c.get("task"), str):
        raise UsageError(f"{run_dir}/run.json lacks the task or input size a baseline is judged at")
    db = latency_db or c.get("latency_db")
    if isinstance(db, str) and "***" in db:
        raise UsageError("the run's latency database URL is masked in run.json: give --latency-db")
    target = Target.resolve(
        budget=rd.budget or Budget(1.0, "median"), task=c["task"], backend=str(rd.meta.get("backend", "auto")),
        input_size=rd.input_size, loss=str(train.get("loss", "l1")), seed=integer(train.get("seed")) or 0,
        train_steps=integer(train.get("steps")), reparam=train.get("reparam"),
        train_dtype=str(train.get("train_dtype") or "fp32"), emulate_bf16=True,  # retrain as the run trained
        noise_sigma=number(train.get("noise_sigma")) or 25.0, latency_db=db, data=c.get("data"),
        val_data=c.get("val_data"), degradation=str(c.get("degradation") or "bicubic"),
        jpeg_quality=integer(c.get("jpeg_quality")) or 90, val_sequence=bool(c.get("val_sequence")))
    device = as_dict(rd.meta.get("device")).get("key")
    if device is not None and device != target.fingerprint.get("key"):
        raise UsageError(f"{run_dir} was measured on {as_dict(rd.meta.get('device')).get('device')}, not on this "
                         f"machine ({target.device_name}): add baselines where the run's latencies were measured")
    return target
