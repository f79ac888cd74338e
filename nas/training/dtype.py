"""The training forward pass's compute type (``--train-dtype``): bf16 autocast where the device computes bf16
natively, fp32 elsewhere (reports/training_speed.md)."""

from __future__ import annotations

import torch

from latency_db.fingerprint import cpu_isa
from nas.errors import UsageError

TRAIN_DTYPES = ("fp32", "bf16")  # the forward pass's compute type (autocast); weights, Adam and the loss stay fp32
# fp32 trains NCHW: channels-last memory ran 1.01-1.13x the steps per second on an AVX2 CPU but moved a gain by
# 0.165 dB (ESPCN; the tolerance is 0.02), so fp32 trainings stay as cached, bit for bit (reports/training_speed.md).
# bf16 trains channels-last: oneDNN's bf16 convolutions (AVX-512 BF16, AMX) want it.
TRAIN_LAYOUT = torch.contiguous_format
# The bf16 recipe, in bf16 trainings' cache keys: 2 adds a re-parameterized conv's identity to its output instead of
# folding it into a kernel rounded to bf16 (nas/training/reparam.py; reports/training_speed.md, "Session 10")
BF16_RECIPE = 2


def layout_for(train_dtype: str) -> torch.memory_format:
    """The memory format a training in ``train_dtype`` keeps its net and batches in."""
    return torch.channels_last if train_dtype == "bf16" else TRAIN_LAYOUT


def recipe_fields(train_dtype: str) -> dict[str, int]:
    """What a training in ``train_dtype`` adds to its cache key beyond TrainConfig's fields (nothing for fp32)."""
    return {"bf16_recipe": BF16_RECIPE} if train_dtype == "bf16" else {}


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """True when ``device`` computes bf16 natively: a CUDA GPU that says so, or a CPU with AVX-512 BF16 or AMX
    (on AVX2 alone autocast emulates bf16, slower than fp32)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_isa()))


def resolve_train_dtype(choice: str, device: str | torch.device = "cpu", emulate: bool = False) -> str:
    """``--train-dtype``: ``auto`` is bf16 where ``device`` computes it natively, fp32 elsewhere
    (reports/training_speed.md); an explicit bf16 on a device without it is refused (emulated, it is slower) unless
    ``emulate`` (a run's own dtype, to retrain its baselines exactly as it trained)."""
    if choice == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if choice not in TRAIN_DTYPES:
        raise UsageError(f"--train-dtype must be auto, {' or '.join(TRAIN_DTYPES)}, got {choice!r}")
    if choice == "bf16" and not emulate and not native_bf16(device):
        raise UsageError(f"--train-dtype bf16: {device} does not compute bf16 natively (no AVX-512 BF16 or AMX, or a "
                         "GPU without bf16); use fp32 or auto")
    return choice
