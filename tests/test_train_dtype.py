"""--train-dtype: bf16 autocast training where the device computes bf16 natively, fp32 elsewhere (issue #25, item 3)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
import torch

from nas.errors import UsageError
from nas.training import dtype
from nas.training.data import TaskData, load_data
from nas.training.dtype import layout_for, resolve_train_dtype
from nas.training.train import TRAIN_PROTOCOL, TrainConfig, short_train
from search_spaces import ArchSpec, Conv

# TrainConfig().hash() before the train_dtype field existed (commit 71ae1f1): fp32 trainings cached then stay valid
FP32_DEFAULT_KEY = "65e78c354356a8133602c89d37cbff3466f530e22724e7a404ce4126093ef7b1"


@pytest.fixture(scope="module")
def sr2() -> TaskData:
    return load_data("sr", 2, 32)


def test_an_fp32_training_keeps_its_cache_key_and_bf16_gets_its_own() -> None:
    fp32 = TrainConfig()
    assert fp32.train_dtype == "fp32" and fp32.hash() == FP32_DEFAULT_KEY
    legacy = {k: v for k, v in fp32.to_dict().items() if k != "train_dtype"} | {"protocol": TRAIN_PROTOCOL}
    assert fp32.hash() == hashlib.sha256(json.dumps(legacy, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    bf16 = TrainConfig(train_dtype="bf16")
    assert bf16.hash() != fp32.hash() and bf16.to_dict()["train_dtype"] == "bf16"
    assert replace(bf16, train_dtype="fp32").hash() == fp32.hash()
    # bf16 trainings cached before the identity was added outside the kernel (recipe 1, no field) are not reused
    first_recipe = bf16.to_dict() | {"protocol": TRAIN_PROTOCOL}
    assert bf16.hash() != hashlib.sha256(json.dumps(first_recipe, sort_keys=True,
                                                    separators=(",", ":")).encode()).hexdigest()


def test_auto_is_bf16_exactly_where_the_device_computes_it_and_a_forced_bf16_is_refused_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dtype, "native_bf16", lambda device="cpu": True)
    assert resolve_train_dtype("auto") == "bf16" and resolve_train_dtype("bf16") == "bf16"
    assert resolve_train_dtype("fp32") == "fp32"
    monkeypatch.setattr(dtype, "native_bf16", lambda device="cpu": False)
    assert resolve_train_dtype("auto") == "fp32"
    with pytest.raises(UsageError, match="does not compute bf16 natively"):
        resolve_train_dtype("bf16")
    assert resolve_train_dtype("bf16", emulate=True) == "bf16"  # a run's own dtype, to retrain its baselines alike
    with pytest.raises(UsageError, match="--train-dtype"):
        resolve_train_dtype("fp16")
    with pytest.raises(UsageError, match="--train-dtype"):
        TrainConfig(train_dtype="fp16")


def test_a_bf16_training_computes_in_bf16_keeps_fp32_weights_and_still_learns(sr2: TaskData) -> None:
    """Runs on any CPU (autocast emulates bf16 where the CPU lacks it; only ``auto`` and the CLI avoid that)."""
    spec = ArchSpec(space="sr", scale=2, upsample="bicubic", color="rgb", space_to_depth=1, head=(Conv(16, 3),))
    cfg = TrainConfig(steps=60, batch_size=4, patch_size=32, lr=2e-3, warmup_steps=5)
    fp32 = short_train(spec, sr2, cfg)
    bf16 = short_train(spec, sr2, replace(cfg, train_dtype="bf16"))
    again = short_train(spec, sr2, replace(cfg, train_dtype="bf16"))
    assert layout_for("bf16") == torch.channels_last and layout_for("fp32") == torch.contiguous_format
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in bf16.state_dict.values())
    assert any(not torch.equal(fp32.state_dict[k], bf16.state_dict[k]) for k in fp32.state_dict)  # bf16 numerics
    assert all(torch.equal(bf16.state_dict[k], again.state_dict[k]) for k in bf16.state_dict)  # and deterministic
    assert bf16.moved and bf16.psnr_gain_db > 0.02, bf16.to_dict()  # as fp32 does in test_train.py
