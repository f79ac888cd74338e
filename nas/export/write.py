"""Writing an export folder atomically, with a self-check; exporting a trial of a run dir."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch

from nas.errors import NasError, UsageError
from nas.export.docs import readme_source, train_source
from nas.export.info import (
    EXPORT_FILES,
    EXPORT_FORMAT,
    INT8_FILE,
    MANIFEST,
    ExportInfo,
)
from nas.export.model_code import check_state_dict, map_state_dict, model_source
from nas.rundir import RunDir, TrialRow, number
from nas.training import reparam
from search_spaces import ArchSpec, build, export_onnx
from search_spaces.spec import is_arch_id


# ---------------------------------------------------------------------- writing
def _load_generated(path: Path) -> Any:
    """Import the generated model.py from ``path`` under a private module name."""
    module_spec = importlib.util.spec_from_file_location(f"_nas_export_{uuid.uuid4().hex}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _self_check(spec: ArchSpec, weights: dict[str, torch.Tensor], mapped: dict[str, torch.Tensor],
                model_py: Path) -> torch.nn.Module:
    """Build the generated module, load the mapped weights and check it computes what the searched
    model computes; returns the loaded module (for the ONNX export)."""
    net = _load_generated(model_py).build_model().eval()
    net.load_state_dict(mapped, strict=True)
    ref = build(spec)
    ref.load_state_dict(weights, strict=True)
    m = spec.size_multiple
    x = torch.rand(1, 3, 2 * m, 3 * m, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((net(x) - ref(x)).abs().max())
    if not diff <= 1e-5:
        raise NasError(f"internal error: the generated model.py differs from the searched model by {diff:g}")
    return net


def _manifest_matches(path: Path, arch_id: str | None) -> bool:
    """True when ``path`` holds exactly a previous export's files, unchanged (of ``arch_id`` unless None)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        names = sorted(p.name for p in path.iterdir())
    except (OSError, ValueError):
        return False
    shipped = [n for n in names if n != INT8_FILE]
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT or shipped != sorted(EXPORT_FILES):
        return False
    if arch_id is not None and manifest.get("arch_id") != arch_id:
        return False
    hashes = manifest.get("files")
    return isinstance(hashes, dict) and all(
        hashes.get(name) == _sha256(path / name) for name in names if name != MANIFEST
    )


def _check_target(out_dir: Path, arch_id: str, replace: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file: pass a folder path")
    if (out_dir.is_dir() and any(out_dir.iterdir())
            and not _manifest_matches(out_dir, None if replace else arch_id)):
        raise UsageError(
            f"--out {out_dir} exists and is not empty (nor an untouched export of this architecture): "
            "nas export never overwrites; remove it or choose another --out"
        )


def _chmod_like_umask(folder: Path) -> None:
    """mkdtemp makes a private (0700) folder; give the export ordinary permissions instead."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_spec(spec: ArchSpec, state_dict: dict[str, torch.Tensor], out_dir: Path, info: dict[str, Any],
                *, replace: bool = False, int8_graph: bytes | None = None) -> Path:
    """Write the export of ``spec`` with ``state_dict`` (SearchedNet's keys) to ``out_dir``.

    ``info``: arch_id, input_size [H, W], latency_ms, latency_p90_ms, psnr_db, psnr_gain_db,
    budget_ms, device, backend, trial, train_config (a dict; its loss, steps, patch_size, batch_size,
    lr, warmup_steps, noise_sigma, rotate, reparam set train.py's defaults). ``out_dir`` must be missing or
    empty, or hold an untouched previous export of the same arch (of any arch with ``replace``):
    then it is replaced. ``int8_graph``: an int8 winner's QDQ graph, shipped as model_int8.onnx. Raises
    UsageError (nothing written) for bad weights, info or target.
    """
    if not isinstance(spec, ArchSpec):
        raise UsageError("export_spec needs an ArchSpec")
    details = ExportInfo.from_dict(spec, info)
    weights = check_state_dict(spec, state_dict, "weights")
    out_dir = Path(out_dir)
    _check_target(out_dir, spec.arch_id, replace)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        if int8_graph is not None:
            (tmp / INT8_FILE).write_bytes(int8_graph)
        _write(spec, weights, details, tmp)
        _chmod_like_umask(tmp)
        _check_target(out_dir, spec.arch_id, replace)  # again: another process may have written there
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write(spec: ArchSpec, weights: dict[str, torch.Tensor], info: ExportInfo, folder: Path) -> None:
    from safetensors.torch import save_file

    (folder / "model.py").write_text(model_source(spec, info), encoding="utf-8")
    (folder / "train.py").write_text(train_source(spec, info), encoding="utf-8")
    shutil.copyfile(reparam.__file__, folder / "reparam.py")  # train.py's re-parameterized training
    (folder / "arch.json").write_text(spec.to_json() + "\n", encoding="utf-8")
    (folder / "README.md").write_text(readme_source(spec, info), encoding="utf-8")
    mapped = map_state_dict(spec, weights)
    save_file(mapped, str(folder / "model.safetensors"), metadata={"arch_id": spec.arch_id})
    torch.save(mapped, folder / "model.pt")
    net = _self_check(spec, weights, mapped, folder / "model.py")
    h, w = info.input_size
    try:
        export_onnx(net, folder / "model.onnx", h, w, fp16=True)
        export_onnx(net, folder / "model_fp32.onnx", h, w, fp16=False)
    except Exception as exc:  # the exporter raises many types; the user needs the reason in one line
        raise NasError(f"ONNX export of {spec.arch_id[:12]} failed: {type(exc).__name__}: {exc}") from exc
    manifest = {
        "format": EXPORT_FORMAT, "arch_id": spec.arch_id, "summary": spec.summary(), "trial": info.trial,
        "input_size": list(info.input_size), "latency_ms": info.latency_ms, "latency_p90_ms": info.latency_p90_ms,
        "psnr_db": info.psnr_db, "psnr_gain_db": info.psnr_gain_db, "budget_ms": info.budget_ms,
        "device": info.device, "backend": info.backend, "loss": info.loss, "train": info.train,
        "precision": info.precision,
        "files": {name: _sha256(folder / name) for name in (*EXPORT_FILES, INT8_FILE)
                  if name != MANIFEST and (folder / name).is_file()},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------- run dirs
def _pick_trial(run: RunDir, trial: int | None) -> TrialRow:
    """The trial to export: ``trial``, or the run's winner (nas.rundir.best_trial)."""
    trained = [r for r in run.trials if r.trained]
    numbers = ", ".join(str(r.number) for r in trained) or "none"
    if trial is None:
        best = run.best()
        if best is None:
            raise UsageError(f"{run.path}: no trial was trained within the budget, so there is no best to "
                             "export: pass --trial N for a trained trial, or run the search again")
        return best
    row = run.trial(trial)
    if row is None:
        raise UsageError(f"{run.path}: there is no trial {trial} in trials.csv (trained trials: {numbers})")
    if not row.trained:
        why = "it was over the latency budget" if row.over_budget else "it was not trained"
        raise UsageError(f"{run.path}: trial {trial} has no trained weights ({why}): pick a trained trial ({numbers})")
    return row


def _device_name(device: Any) -> str:
    """A human name from run.json's device fingerprint (a string, or a dict with a name in it)."""
    if isinstance(device, str):
        return device
    if isinstance(device, dict):
        for key in ("name", "gpu_name", "cpu_model", "model", "gpu", "cpu", "device"):
            found = _device_name(device.get(key))
            if found:
                return found
    return ""


def export_run(run_dir: Path, out_dir: Path, trial: int | None = None, *, replace: bool = False) -> Path:
    """Export one trained trial of a run dir (default: the run's winner) to ``out_dir``.

    Reads the run dir through nas.rundir (run.json, trials.csv and archs/<arch_id>/{arch.json,
    latency.json, train.json, weights.safetensors}). Raises UsageError with one line (nothing
    written) for a missing run dir, an unknown or untrained trial, hostile files, or an ``out_dir``
    that holds something else.
    """
    run = RunDir.load(Path(run_dir))
    row = _pick_trial(run, trial)
    if not is_arch_id(row.arch_id):
        raise UsageError(f"{run.path}/trials.csv: trial {row.number} has a malformed arch_id")
    spec = run.spec(row.arch_id)
    state = run.weights(row.arch_id, row.precision)
    train = run.training(row.arch_id, row.precision) or {}  # the record of the weights exported: a finalist's
    latency = run.record(row.arch_id, "latency.json", row.precision) or {}
    train_config = train.get("train_config") if isinstance(train.get("train_config"), dict) else run.meta.get(
        "train_config")
    info = {
        "arch_id": spec.arch_id,  # canonical: a run dir from before issue #25 may name the spec otherwise
        "trial": row.number if row.number >= 0 else None,
        "input_size": list(run.input_size) if run.input_size else None,
        "latency_ms": row.latency_ms if row.latency_ms is not None else number(latency.get("median_ms")),
        "latency_p90_ms": row.latency_p90_ms if row.latency_p90_ms is not None else number(latency.get("p90_ms")),
        "psnr_db": number(train.get("psnr_db")) if row.final_psnr_gain_db is not None or row.psnr_db is None
        else row.psnr_db,
        "psnr_gain_db": row.final_psnr_gain_db if row.final_psnr_gain_db is not None
        else row.psnr_gain_db if row.psnr_gain_db is not None else number(train.get("psnr_gain_db")),
        "budget_ms": run.config.get("budget_ms"),
        "device": _device_name(run.meta.get("device")) or "unknown",
        "backend": run.meta.get("backend", "unknown"),
        "train_config": train_config if isinstance(train_config, dict) else {"loss": run.config.get("loss")},
        "degradation": run.config.get("degradation"), "jpeg_quality": run.config.get("jpeg_quality"),
        "task": run.config.get("task"), "precision": row.precision or None,
    }
    int8 = run.precision_dir(row.arch_id, "int8") / INT8_FILE if row.precision == "int8" else None
    if int8 is not None and not int8.is_file():
        raise UsageError(f"{int8} is missing: the int8 trial's QDQ graph was not written")
    return export_spec(spec, state, Path(out_dir), info, replace=replace,
                       int8_graph=None if int8 is None else int8.read_bytes())
