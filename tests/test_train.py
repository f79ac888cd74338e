"""Short training: config hashing, schedule, determinism, gains, failure detection, training cache."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from nas.errors import UsageError
from nas.training.data import TaskData, load_data, val_pairs
from nas.training.reparam import KINDS as REPARAM_KINDS
from nas.training.reparam import reparameterize
from nas.training.train import TrainConfig, lr_factor, param_groups, short_train, validate
from nas.training.train_cache import TrainCache
from search_spaces import ArchSpec, Conv, build, get_space

TINY_CFG = TrainConfig(steps=6, batch_size=4, patch_size=16, lr=5e-3, warmup_steps=2)


def _bicubic_net(head: tuple[Conv, ...] = (Conv(16, 3),)) -> ArchSpec:
    return ArchSpec(space="sr", scale=2, upsample="bicubic", color="rgb", space_to_depth=1, head=head)


@pytest.fixture(scope="module")
def sr2() -> TaskData:
    return load_data("sr", 2, 32)


@pytest.fixture(scope="module")
def sr2_48() -> TaskData:
    return load_data("sr", 2, 48)


def test_config_hash_is_canonical_and_sensitive() -> None:
    a = TrainConfig()
    assert a.hash() == TrainConfig().hash() and len(a.hash()) == 64
    assert TrainConfig(loss=" L1 ").hash() == a.hash()
    assert TrainConfig(seed=1).hash() != a.hash() and TrainConfig(loss="l1+hfen:0.1").hash() != a.hash()
    assert len({TrainConfig(reparam=kind).hash() for kind in REPARAM_KINDS} | {a.hash()}) == len(REPARAM_KINDS)
    assert a.to_dict()["loss"] == "l1" and set(a.to_dict()) >= {"steps", "batch_size", "patch_size", "lr", "seed"}


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"batch_size": 0}, {"patch_size": 4}, {"lr": 0.0},
                                    {"warmup_steps": -1}, {"noise_sigma": -1.0}, {"loss": "l7"},
                                    {"reparam": "acb"}])
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        TrainConfig(**kwargs)


def test_lr_schedule_warms_up_then_decays() -> None:
    factors = [lr_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0) and factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:])) and factors[-1] < 0.01


def test_untrained_net_equals_bicubic_exactly(sr2: TaskData) -> None:
    net = build(_bicubic_net())
    v = validate(net, val_pairs(sr2), "sr", 2, torch.device("cpu"))
    assert v.gain_db == 0.0 and not v.moved
    den = load_data("denoise", 1, 16)
    ref = get_space("denoise").references()["unet_small"]
    v = validate(build(ref), val_pairs(den, 25.0), "denoise", 1, torch.device("cpu"))
    assert v.gain_db == 0.0 and not v.moved and v.bicubic_psnr_db < 25


def test_dead_net_is_not_moved(sr2: TaskData) -> None:
    net = build(_bicubic_net())
    pairs, cpu = val_pairs(sr2), torch.device("cpu")
    with torch.no_grad():
        net.out.weight.normal_(0, 0.01)
        net.out.bias.fill_(0.01)
        assert validate(net, pairs, "sr", 2, cpu).moved
        net.head.convs[0].bias.fill_(-100.0)  # every ReLU dead: the output is base + a bias pattern
    v = validate(net, pairs, "sr", 2, cpu)
    assert not v.moved and v.gain_db != 0.0


def test_wide_convs_train_at_a_fan_in_scaled_lr() -> None:
    spec = ArchSpec(space="sr", scale=2, upsample="bilinear", color="rgb", space_to_depth=1,
                    head=(Conv(16, 3), Conv(64, 5)))
    net = build(spec)
    lrs = {tuple(g["params"][0].shape): g["lr"] for g in param_groups(net, 3e-3, 144)}
    assert lrs[(16, 3, 3, 3)] == 3e-3          # fan-in 27: the base lr
    assert lrs[(64, 16, 5, 5)] == pytest.approx(3e-3 * (144 / 400) ** 0.5)
    assert lrs[(64,)] == 3e-3                  # biases: the base lr
    assert all(g["lr"] == 3e-3 for g in param_groups(net, 3e-3, 0))


def test_branch_weights_train_at_their_convs_lr() -> None:
    spec = ArchSpec(space="sr", scale=2, upsample="bilinear", color="rgb", space_to_depth=1, head=(Conv(64, 5),))
    net = reparameterize(build(spec), "linear", keep=False)
    lrs = {tuple(g["params"][0].shape): g["lr"] for g in param_groups(net, 3e-3, 144)}
    assert lrs[(256, 3, 5, 5)] == lrs[(64, 256)] == 3e-3          # the 5x5 from 3 channels: fan-in 75
    assert lrs[(12, 48)] == lrs[(48, 64, 3, 3)] == pytest.approx(3e-3 * (144 / 576) ** 0.5)


def test_the_usage_error_names_the_kinds() -> None:
    with pytest.raises(UsageError, match="--reparam must be one of none, linear, ecb, got 'acb'"):
        TrainConfig(reparam="acb")


@pytest.mark.parametrize("kind", REPARAM_KINDS[1:])
def test_reparam_training_keeps_the_collapsed_plain_net(sr2: TaskData, kind: str) -> None:
    """The stored weights are the plain net's and reproduce the validation the wrapped net was given."""
    spec = ArchSpec(space="sr", scale=2, upsample="bicubic", color="rgb", space_to_depth=1,
                    head=(Conv(16, 3), Conv(16, 3)), skip="add")
    cfg = TrainConfig(**{**TINY_CFG.to_dict(), "steps": 20, "val_every": 10, "reparam": kind})
    r, plain = (short_train(spec, sr2, cfg),
                short_train(spec, sr2, TrainConfig(**{**TINY_CFG.to_dict(), "reparam": "none"})))
    assert r.moved and r.psnr_gain_db != plain.psnr_gain_db and len(r.val_curve) == 2
    net = build(spec)
    net.load_state_dict(r.state_dict, strict=True)
    v = validate(net, val_pairs(sr2), "sr", 2, torch.device("cpu"))
    assert v.gain_db == r.psnr_gain_db  # collapsed before the final validation: the same net exactly


@pytest.mark.slow
def test_deep_candidate_stays_alive(sr2_48: TaskData) -> None:
    """A candidate whose ReLUs all died under a flat lr with a short warm-up (an H200 search, trial 8)."""
    spec = ArchSpec.from_dict({
        "schema_version": 1, "space": "sr", "scale": 2, "upsample": "bilinear", "color": "luma", "space_to_depth": 2,
        "head": [{"op": "conv", "width": 40, "kernel": 5}, {"op": "conv", "width": 8, "kernel": 3},
                 {"op": "conv", "width": 8, "kernel": 1}, {"op": "conv", "width": 56, "kernel": 5}],
        "levels": [{"width": 32, "body": [{"op": "conv", "width": 8, "kernel": 3},
                                          {"op": "conv", "width": 32, "kernel": 3}],
                    "up_kernel": 1}],
        "tail": [{"op": "conv", "width": 16, "kernel": 5}, {"op": "conv", "width": 40, "kernel": 1}],
        "skip": "none", "output_kernel": 5})
    # plain training: the premise is a plain conv stack (re-parameterized branches start it elsewhere)
    flat = short_train(spec, sr2_48, TrainConfig(steps=100, lr_fan_in=0, warmup_steps=25, reparam="none"))
    scaled = short_train(spec, sr2_48, TrainConfig(steps=100, reparam="none"))
    assert not flat.moved
    assert scaled.moved and scaled.psnr_gain_db > flat.psnr_gain_db


def test_same_seed_same_weights_other_seed_differs(sr2: TaskData) -> None:
    spec = get_space("sr2x").references()["tiny"]
    a, b = short_train(spec, sr2, TINY_CFG), short_train(spec, sr2, TINY_CFG)
    c = short_train(spec, sr2, TrainConfig(**{**TINY_CFG.to_dict(), "seed": 1}))
    assert a.to_dict() | {"train_s": 0} == b.to_dict() | {"train_s": 0}
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert any(not torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)
    assert a.psnr_db != c.psnr_db
    assert set(a.state_dict) == set(build(spec).state_dict())
    assert all(t.dtype == torch.float32 for t in a.state_dict.values())


def test_short_training_beats_bicubic(sr2: TaskData) -> None:
    """A tiny net over a bicubic base: 60 small steps already give a positive gain (about 0.05-0.1 dB)."""
    calls: list[int] = []
    cfg = TrainConfig(steps=60, batch_size=4, patch_size=32, lr=2e-3, warmup_steps=5)
    r = short_train(_bicubic_net(), sr2, cfg, progress=lambda s, n, loss: calls.append(s))
    assert r.moved and r.psnr_gain_db > 0.02, r.to_dict()
    assert r.psnr_gain_db == pytest.approx(r.psnr_db - r.bicubic_psnr_db)
    assert 0 < r.ssim < 1 and r.loss_curve[-1][0] == 60 and r.loss_curve[-1][1] < r.loss_curve[0][1]
    assert calls[-1] == 60 and len(calls) == 20 and r.val_curve == [[60, r.psnr_gain_db]]


def test_denoise_training_beats_noisy_input() -> None:
    """With the default (ecb) training: its zero-started branches make the first steps slower than plain
    training's (+0.27 dB after 30 steps, +0.67 after 60, against plain's +0.82 and +1.69), hence 60 steps."""
    data = load_data("denoise", 1, 32)
    cfg = TrainConfig(steps=60, batch_size=4, patch_size=32, lr=5e-3, warmup_steps=3, loss="charbonnier+hfen:0.1")
    spec = ArchSpec(space="denoise", scale=1, upsample="identity", color="rgb", space_to_depth=2,
                    head=(Conv(16, 3),))
    r = short_train(spec, data, cfg)
    assert r.moved and r.psnr_gain_db > 0.5


def test_enhance_learns_a_colour_grade_from_pairs(tmp_path: Path) -> None:
    """Same-size pairs whose target swaps the red and blue channels: the base (the input itself) is far off,
    and a short training closes much of the gap."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for side in ("input", "target"):
        (tmp_path / side).mkdir()
    for i in range(4):
        frame = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        frame = np.asarray(Image.fromarray(frame).resize((64, 64), Image.BICUBIC))
        Image.fromarray(frame).save(tmp_path / "input" / f"{i}.png")
        Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1])).save(tmp_path / "target" / f"{i}.png")
    data = load_data("enhance", 1, 16, data=tmp_path, val_data=tmp_path)
    cfg = TrainConfig(steps=60, batch_size=4, patch_size=16, lr=5e-3, warmup_steps=5)
    r = short_train(get_space("enhance").references()["unet_small"], data, cfg)
    base = validate(build(get_space("enhance").references()["unet_small"]), val_pairs(data), "enhance", 1,
                    torch.device("cpu"))
    assert base.gain_db == pytest.approx(0.0, abs=1e-9)       # untrained: the input itself
    assert r.moved and r.psnr_gain_db > 1.0, r.to_dict()


def test_training_measures_stability_and_flicker_on_a_clip(tmp_path: Path) -> None:
    """A clip (one scene panned a pixel per frame) validates shift consistency and flicker; stills only the first."""
    import numpy as np
    from PIL import Image

    scene = np.asarray(Image.fromarray((np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8))
                       .resize((400, 240), Image.BICUBIC))
    for name, n in (("train", 3), ("clip", 4)):
        (tmp_path / name).mkdir()
        for t in range(n):
            Image.fromarray(np.ascontiguousarray(scene[:160, t * 2 + (100 if name == "clip" else 0):][:, :256]))\
                .save(tmp_path / name / f"{t:03d}.png")
    clip = load_data("sr", 2, 16, data=tmp_path / "train", val_data=tmp_path / "clip", val_sequence=True)
    stills = load_data("sr", 2, 16, data=tmp_path / "train", val_data=tmp_path / "clip")
    spec = get_space("sr2x").references()["tiny"]
    on_clip, on_stills = short_train(spec, clip, TINY_CFG), short_train(spec, stills, TINY_CFG)
    assert clip.data_id != stills.data_id and clip.val_names == stills.val_names
    assert 20 < on_clip.temporal_psnr_db < 100 and math.isnan(on_stills.temporal_psnr_db)
    # a plain conv stack over a bilinear base moves with the content: it scores the cap (border effects aside)
    assert on_clip.shift_consistency_db == pytest.approx(on_stills.shift_consistency_db, abs=1e-9)
    assert on_clip.shift_consistency_db > 90


def test_mismatched_spec_and_patch_are_usage_errors(sr2: TaskData) -> None:
    sr3 = get_space("sr3x").references()["tiny"]
    with pytest.raises(UsageError, match="x3"):
        short_train(sr3, sr2, TINY_CFG)
    s2d = ArchSpec(space="sr", scale=2, upsample="bicubic", color="rgb", space_to_depth=2, head=(Conv(8, 3),))
    with pytest.raises(UsageError, match="multiple of 2"):
        short_train(s2d, sr2, TrainConfig(steps=1, patch_size=9))


def test_train_cache_round_trip(tmp_path: Path, sr2: TaskData) -> None:
    spec = get_space("sr2x").references()["tiny"]
    result = short_train(spec, sr2, TINY_CFG)
    cache = TrainCache(f"sqlite:///{tmp_path / 'nas.db'}")
    key = (spec.arch_id, TINY_CFG.hash(), sr2.data_id)
    assert cache.get(*key) is None
    assert cache.put(*key, result, TINY_CFG.to_dict()) is True
    assert cache.put(*key, result) is False  # insert-or-ignore
    got = TrainCache(str(tmp_path / "nas.db")).get(*key)  # a second handle, a bare path
    assert got is not None and got.to_dict() == result.to_dict()
    assert all(torch.equal(got.state_dict[k], result.state_dict[k]) for k in result.state_dict)
    build(spec).load_state_dict(got.state_dict, strict=True)
    assert cache.get(spec.arch_id, TrainConfig(seed=1).hash(), sr2.data_id) is None
    assert cache.get(spec.arch_id, TINY_CFG.hash(), "0" * 64) is None
