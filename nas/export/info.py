"""What goes into an export, checked: safe text, numbers, the loss, ExportInfo, the input size."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nas.errors import UsageError
from nas.rundir import number
from nas.target import CPU_INPUT_SIZE
from nas.training.degrade import DEGRADATIONS
from nas.training.reparam import KINDS as REPARAM_KINDS
from search_spaces import ArchSpec

EXPORT_FORMAT = 1
MANIFEST = "export.json"
EXPORT_FILES = ("model.py", "train.py", "reparam.py", "arch.json", "model.safetensors", "model.pt", "model.onnx",
                "model_fp32.onnx", "README.md", MANIFEST)
INT8_FILE = "model_int8.onnx"  # an int8 winner's QDQ graph, as the search scored it (in addition to EXPORT_FILES)
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._-]")


# ---------------------------------------------------------------------- safe values
def safe_text(value: Any, limit: int = 80) -> str:
    """Free text (a device or backend name) reduced to [A-Za-z0-9 ._-], one line, at most ``limit``."""
    text = " ".join(_UNSAFE.sub(" ", str(value)).split())[:limit].strip()
    return text or "unknown"


def fmt_number(value: Any, spec: str = ".3f", unit: str = "") -> str:
    f = number(value)
    return "n/a" if f is None else f"{f:{spec}}{unit}"


def _int_in(value: Any, low: int, high: int, default: int) -> int:
    n = number(value)
    if n is None or n != int(n) or not low <= n <= high:
        return default
    return int(n)


def canonical_loss(text: Any) -> str | None:
    """The loss in canonical form (``l1+hfen:0.1``) when it parses (nas/training/metrics.py), else None."""
    from nas.training.metrics import parse_loss

    try:
        return parse_loss(text).canonical
    except UsageError:
        return None


@dataclass(frozen=True)
class ExportInfo:
    """The numbers and names that go into the generated files, every one checked or sanitized."""

    arch_id: str
    input_size: tuple[int, int]
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    psnr_db: float | None = None
    psnr_gain_db: float | None = None
    budget_ms: float | None = None
    device: str = "unknown"
    backend: str = "unknown"
    trial: int | None = None
    loss: str = "l1"
    loss_note: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"   # the precision the search measured and scored it in (int8: QAT in train.py)

    @classmethod
    def from_dict(cls, spec: ArchSpec, info: dict[str, Any]) -> ExportInfo:
        """Check ``info`` (arch_id, input_size, latency_ms, latency_p90_ms, psnr_db, psnr_gain_db,
        budget_ms, device, backend, trial, train_config): raise UsageError for what contradicts the
        spec, keep what is well-formed, drop the rest."""
        arch_id = info.get("arch_id", spec.arch_id)
        if arch_id != spec.arch_id:
            raise UsageError(f"info arch_id {safe_text(arch_id, 70)} is not the spec's arch_id {spec.arch_id}")
        input_size = _input_size(spec, info.get("input_size"))
        raw_train = info.get("train_config")
        tc = raw_train if isinstance(raw_train, dict) else {}
        loss = canonical_loss(tc.get("loss", info.get("loss", "l1")))
        note = "" if loss is not None else "the search's loss is not one train.py knows; it defaults to l1"
        sigma = number(tc.get("noise_sigma"))
        lr = number(tc.get("lr"))
        train = {
            "steps": _int_in(tc.get("steps"), 1, 10**9, 0),
            "batch_size": _int_in(tc.get("batch_size"), 1, 4096, 16),
            "patch_size": _int_in(tc.get("patch_size"), 8, 4096, 48),
            "lr": lr if lr is not None and 0 < lr < 1 else 2e-3,
            "warmup_steps": _int_in(tc.get("warmup_steps"), 0, 10**9, 20),
            "lr_fan_in": _int_in(tc.get("lr_fan_in"), 0, 10**6, 0),  # absent: a search from before it existed
            "noise_sigma": sigma if sigma is not None and 0 <= sigma <= 255 else 25.0,
            "rotate": tc.get("rotate") is True,
            "reparam": tc.get("reparam") if tc.get("reparam") in REPARAM_KINDS else "none",
            # denoising adds noise to unpaired images; enhance (same topology, --task enhance) learns pairs or JPEG
            "add_noise": info.get("task") == "denoise" if isinstance(info.get("task"), str)
            else spec.space == "denoise",
            "degradation": info.get("degradation") if info.get("degradation") in DEGRADATIONS else "bicubic",
            "jpeg_quality": _int_in(info.get("jpeg_quality"), 1, 95, 90),
        }
        patch = train["patch_size"]
        train["patch_size"] = max(spec.size_multiple, patch // spec.size_multiple * spec.size_multiple)
        trial = info.get("trial")
        return cls(
            arch_id=spec.arch_id, input_size=input_size,
            latency_ms=number(info.get("latency_ms")), latency_p90_ms=number(info.get("latency_p90_ms")),
            psnr_db=number(info.get("psnr_db")), psnr_gain_db=number(info.get("psnr_gain_db")),
            budget_ms=number(info.get("budget_ms")),
            device=safe_text(info.get("device", "unknown")), backend=safe_text(info.get("backend", "unknown"), 40),
            trial=trial if isinstance(trial, int) and not isinstance(trial, bool) and trial >= 0 else None,
            loss=loss or "l1", loss_note=note, train=train,
            precision=info["precision"] if info.get("precision") in ("fp32", "fp16", "int8") else "fp32",
        )


def _input_size(spec: ArchSpec, value: Any) -> tuple[int, int]:
    """(H, W) of the low-resolution input the ONNX graphs are exported for."""
    m = spec.size_multiple
    if value is None:
        return tuple(max(m, v // m * m) for v in CPU_INPUT_SIZE)  # type: ignore[return-value]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 16384 for v in value)):
        raise UsageError(f"input_size must be [height, width] in pixels, got {safe_text(value)}")
    if value[0] % m or value[1] % m:
        raise UsageError(f"input size {value[0]}x{value[1]} is not a multiple of {m}, which this spec needs")
    return int(value[0]), int(value[1])
