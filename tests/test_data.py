"""Image sources, splits, user-folder errors, degradations and patch sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.errors import UsageError
from nas.training.data import PatchSampler, load_data, val_pairs
from nas.training.degrade import add_noise, degrade, downscale, jitter_offset, make_lr, point_sample, quantize
from nas.training.images import DEFAULT_TRAIN, DEFAULT_VAL


def _write(path: Path, w: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _folder(root: Path, n: int, w: int = 64, h: int = 48) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _write(root / f"frame_{i:03d}.png", w, h, i)
    return root


@pytest.fixture(scope="module")
def sr2() -> object:
    return load_data("sr", 2, 48)


def test_default_split_is_fixed_and_disjoint(sr2) -> None:
    assert sr2.train_names == DEFAULT_TRAIN and sr2.val_names == DEFAULT_VAL
    assert not set(sr2.train_names) & set(sr2.val_names)
    for hr, lr in zip(sr2.val_hr + sr2.train_hr, sr2.val_lr + sr2.train_lr):
        assert hr.dtype == torch.uint8 and lr.shape[1:] == (hr.shape[1] // 2, hr.shape[2] // 2)
    for lr in sr2.val_lr:
        assert lr.shape[1] % 16 == 0 and lr.shape[2] % 16 == 0 and max(lr.shape[1:]) <= 256
    assert sr2.data_id == load_data("sr", 2, 48).data_id


def test_folder_split_takes_a_sorted_tail(tmp_path: Path) -> None:
    data = load_data("sr", 2, 16, data=_folder(tmp_path / "frames", 12))
    assert data.train_names == tuple(f"frame_{i:03d}.png" for i in range(11))
    assert data.val_names == ("frame_011.png",)
    assert data.data_id != load_data("sr", 2, 16).data_id


def test_separate_val_folder_and_fingerprint(tmp_path: Path) -> None:
    train_dir, val_dir = _folder(tmp_path / "a", 3), tmp_path / "b"
    val_dir.mkdir()
    _write(val_dir / "v.jpg", 64, 64, 99)
    data = load_data("denoise", 1, 16, data=train_dir, val_data=val_dir)
    assert len(data.train_names) == 3 and data.val_names == ("v.jpg",)
    _write(train_dir / "frame_000.png", 64, 48, 1234)  # one changed file changes the fingerprint
    assert load_data("denoise", 1, 16, data=train_dir, val_data=val_dir).data_id != data.data_id


def _error(**kwargs: object) -> str:
    with pytest.raises(UsageError) as info:
        load_data("sr", 2, kwargs.pop("patch", 16), **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert str(missing) in _error(data=missing) and "does not exist" in _error(data=missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    assert str(empty) in _error(data=empty) and "no .png" in _error(data=empty)
    assert "--val-data" in _error(val_data=empty)


def test_corrupt_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "f", 3)
    (folder / "frame_001.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    message = _error(data=folder)
    assert "frame_001.png" in message and "cannot read" in message


def test_image_smaller_than_a_patch(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "f", 3)
    _write(folder / "frame_000.png", 20, 48, 0)
    message = _error(data=folder, patch=16)  # needs 32x32 at scale 2
    assert "frame_000.png" in message and "20x48" in message and "patch" in message


def test_single_image_needs_a_val_folder(tmp_path: Path) -> None:
    assert "--val-data" in _error(data=_folder(tmp_path / "one", 1))


def test_patches_are_deterministic_aligned_and_shaped(sr2) -> None:
    a = PatchSampler(sr2, 24, seed=7, rotate=True).batch(6)
    b = PatchSampler(sr2, 24, seed=7, rotate=True).batch(6)
    c = PatchSampler(sr2, 24, seed=8, rotate=True).batch(6)
    assert a[0].shape == (6, 3, 24, 24) and a[1].shape == (6, 3, 48, 48)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    # input and target stay aligned through flips and rotations: the input is the target's downscale
    err = (downscale(a[1], 2) - a[0])[..., 4:-4, 4:-4].abs().mean().item()
    assert err < 3 / 255
    wrong = (downscale(a[1].flip(-1), 2) - a[0])[..., 4:-4, 4:-4].abs().mean().item()
    assert wrong > 3 * err


def test_denoise_noise_level_and_fixed_validation_noise() -> None:
    data = load_data("denoise", 1, 32)
    inp, tgt = PatchSampler(data, 32, seed=0, noise_sigma=10.0).batch(4)
    assert inp.shape == tgt.shape == (4, 3, 32, 32)
    mid = (tgt > 0.15) & (tgt < 0.85)  # away from clipping
    assert (inp - tgt)[mid].std().item() == pytest.approx(10 / 255, rel=0.1)
    first, second = val_pairs(data, 10.0), val_pairs(data, 10.0)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(first, second))
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(add_noise(torch.full((1, 1, 2, 2), 0.5), 0.0, gen), torch.full((1, 1, 2, 2), 0.5))


# ---------------------------------------------------------------------- degradations
def _checkerboard(h: int, w: int) -> torch.Tensor:
    """uint8 (3,h,w) alternating 0/255 pixels: the pattern a point sampler aliases to a flat colour."""
    board = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 * 255).to(torch.uint8)
    return board.expand(3, h, w).contiguous()


def test_point_sampling_takes_every_sth_pixel_without_a_filter() -> None:
    hr = torch.arange(3 * 6 * 8, dtype=torch.int64).view(3, 6, 8).to(torch.uint8)
    assert torch.equal(point_sample(hr, 2), hr[:, ::2, ::2])
    assert torch.equal(point_sample(hr, 3, (1, 2)), hr[:, 1::3, 2::3][:, :2, :2])
    board = _checkerboard(32, 32)
    assert point_sample(board, 2).unique().tolist() == [0]              # aliased: the detail turns flat black
    assert point_sample(board, 2, (0, 1)).unique().tolist() == [255]    # one pixel over: flat white
    bicubic = make_lr(board, 2)[:, 4:-4, 4:-4].float()                  # the filter averages it to grey
    assert (bicubic - 127.5).abs().max().item() < 2
    assert [jitter_offset(i, 2) for i in range(5)] == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 0)]


def test_video_degradation_is_bicubic_then_jpeg() -> None:
    rng = np.random.default_rng(3)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(rng.random((1, 3, 16, 16))), size=64, mode="bicubic")
    hr = (smooth.clamp(0, 1) * 255).round().to(torch.uint8)[0]
    bicubic = make_lr(hr, 2)
    errs = {q: (degrade(hr, 2, "video", q).float() - bicubic.float()).abs().mean().item() for q in (30, 90)}
    assert degrade(hr, 2, "video", 90).shape == bicubic.shape
    assert 0 < errs[90] < errs[30]   # JPEG changes the frame, more at a lower quality
    assert torch.equal(degrade(hr, 2, "bicubic"), bicubic)


def test_degradation_changes_inputs_and_data_id_not_targets(sr2) -> None:
    render = load_data("sr", 2, 48, degradation="render")
    video = load_data("sr", 2, 48, degradation="video", jpeg_quality=90)
    ids = {sr2.data_id, render.data_id, video.data_id, load_data("sr", 2, 48, degradation="video").data_id,
           load_data("sr", 2, 48, degradation="video", jpeg_quality=50).data_id}
    assert len(ids) == 4                                      # q90 is the default quality: same id
    assert load_data("sr", 2, 48, degradation="bicubic").data_id == sr2.data_id
    assert (render.degradation, video.degradation, sr2.degradation) == ("render", "video-q90", "bicubic")
    assert all(torch.equal(a, b) for a, b in zip(render.val_hr, sr2.val_hr))
    assert all(torch.equal(lr, point_sample(hr, 2)) for hr, lr in zip(render.train_hr, render.train_lr))
    assert render.describe()["degradation"] == "render"
    jitter = load_data("sr", 2, 48, degradation="render-jitter")
    assert all(torch.equal(lr, point_sample(hr, 2, jitter_offset(i, 2)))
               for i, (hr, lr) in enumerate(zip(jitter.train_hr, jitter.train_lr)))
    assert not torch.equal(jitter.train_lr[1], render.train_lr[1])


def test_render_patches_sit_at_matching_positions() -> None:
    data = load_data("sr", 2, 16, degradation="render")
    inp, tgt = PatchSampler(data, 16, seed=1).batch(8)   # flips move which pixel of each block was sampled
    x8, y8 = quantize(inp), quantize(tgt)
    for x, y in zip(x8, y8):
        assert any(torch.equal(x, point_sample(y, 2, (dy, dx))) for dy in (0, 1) for dx in (0, 1))


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"degradation": "blur"}, "--degradation must be one of bicubic, render, render-jitter, video"),
    ({"degradation": "video", "jpeg_quality": 0}, "--jpeg-quality must be an integer from 1 to 95"),
    ({"degradation": "video", "jpeg_quality": 100}, "--jpeg-quality"),
])
def test_bad_degradation_settings(kwargs: dict, needle: str) -> None:
    assert needle in _error(**kwargs)


def test_denoise_refuses_an_sr_degradation() -> None:
    with pytest.raises(UsageError, match="applies to the super-resolution tasks"):
        load_data("denoise", 1, 16, degradation="render")


# ---------------------------------------------------------------------- paired folders
def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    """HxWx3 uint8 with detail at several scales (random noise upsampled), like a rendered frame."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, max(2, h // 4), max(2, w // 4))))
    fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    fine = fine + 0.15 * torch.from_numpy(rng.random((1, 3, h, w)))
    return (fine.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def _pairs(root: Path, n: int, scale: int, w: int = 64, h: int = 48, how: str = "render") -> Path:
    """``n`` generated pairs in root/input and root/target: point-sampled inputs, as PNG or as JPEG q90."""
    (root / "input").mkdir(parents=True, exist_ok=True)
    (root / "target").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        target = _smooth(h * scale, w * scale, i)
        Image.fromarray(target).save(root / "target" / f"f{i:03d}.png")
        small = Image.fromarray(np.ascontiguousarray(target[::scale, ::scale]))
        if how == "render":
            small.save(root / "input" / f"f{i:03d}.png")
        else:
            small.save(root / "input" / f"f{i:03d}.jpg", quality=90)
    return root


def test_paired_folder_uses_its_inputs_at_matching_positions(tmp_path: Path) -> None:
    data = load_data("sr", 2, 16, data=_pairs(tmp_path / "p", 10, 2))
    assert data.train_paired and data.val_paired and data.kind == "sr" and data.scale == 2
    assert data.train_names == tuple(f"f{i:03d}.png" for i in range(9)) and data.val_names == ("f009.png",)
    for hr, lr in zip(data.train_hr + data.val_hr, data.train_lr + data.val_lr):
        assert torch.equal(lr, point_sample(hr, 2))          # the file's input, cropped where the target is
    assert data.val_lr[0].shape[1:] == (48, 64) and data.describe()["train_paired"] is True
    inp, tgt = PatchSampler(data, 16, seed=2).batch(6)
    for x, y in zip(quantize(inp), quantize(tgt)):
        assert any(torch.equal(x, point_sample(y, 2, (dy, dx))) for dy in (0, 1) for dx in (0, 1))
    other = load_data("sr", 2, 16, data=_pairs(tmp_path / "q", 10, 2, how="jpeg"))
    assert other.data_id != data.data_id                 # same targets, other inputs: other data


def test_enhance_pairs_and_jpeg_repair_on_unpaired_frames(tmp_path: Path) -> None:
    data = load_data("enhance", 1, 16, data=_pairs(tmp_path / "p", 4, 1, how="jpeg"))
    assert data.kind == "enhance" and data.space_kind == "denoise" and data.val_lr[0].shape == data.val_hr[0].shape
    assert not torch.equal(data.val_lr[0], data.val_hr[0])   # the JPEG input, not the target
    jpeg = load_data("enhance", 1, 16, data=_folder(tmp_path / "plain", 3), degradation="video", jpeg_quality=50)
    assert not jpeg.train_paired and torch.equal(jpeg.train_lr[0], degrade(jpeg.train_hr[0], 1, "video", 50))


def test_unpaired_training_with_paired_validation(tmp_path: Path) -> None:
    data = load_data("sr", 2, 16, val_data=_pairs(tmp_path / "v", 2, 2), degradation="render")
    assert not data.train_paired and data.val_paired and data.train_names == DEFAULT_TRAIN
    assert all(torch.equal(lr, point_sample(hr, 2)) for hr, lr in zip(data.val_hr, data.val_lr))


def _pair_error(kind: str, scale: int, **kwargs: object) -> str:
    with pytest.raises(UsageError) as info:
        load_data(kind, scale, 16, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_paired_folder_errors(tmp_path: Path) -> None:
    missing = _pairs(tmp_path / "missing", 3, 2)
    (missing / "input" / "f001.png").unlink()
    assert "target/f001.png has no partner in input/" in _pair_error("sr", 2, data=missing)
    extra = _pairs(tmp_path / "extra", 3, 2)
    Image.fromarray(_smooth(48, 64, 9)).save(extra / "input" / "z.png")
    assert "input/z.png has no partner in target/" in _pair_error("sr", 2, data=extra)
    odd = _pairs(tmp_path / "odd", 3, 2)
    Image.fromarray(_smooth(97, 128, 1)).save(odd / "target" / "f001.png")
    assert "f001.png" in (m := _pair_error("sr", 2, data=odd)) and "not one integer scale" in m and "128x97" in m
    mixed = _pairs(tmp_path / "mixed", 3, 2)
    Image.fromarray(_smooth(48 * 3, 64 * 3, 1)).save(mixed / "target" / "f001.png")
    assert "different scales" in (m := _pair_error("sr", 2, data=mixed)) and "x2 (f000.png)" in m and "x3" in m
    empty = tmp_path / "empty"
    (empty / "input").mkdir(parents=True)
    (empty / "target").mkdir()
    assert "hold no .png" in _pair_error("sr", 2, data=empty)
    bad = _pairs(tmp_path / "bad", 3, 2)
    (bad / "input" / "f002.png").write_bytes(b"not a png at all")
    assert "cannot read image" in (m := _pair_error("sr", 2, data=bad)) and "f002.png" in m


def test_paired_scale_and_task_must_agree(tmp_path: Path) -> None:
    x2, x1 = _pairs(tmp_path / "x2", 3, 2), _pairs(tmp_path / "x1", 3, 1)
    assert "x2 apart" in (m := _pair_error("sr", 3, data=x2)) and "--task sr3x" in m and "use --task sr2x" in m
    assert "use --task sr2x" in _pair_error("enhance", 1, data=x2)
    assert "use --task enhance" in _pair_error("sr", 2, data=x1)
    assert "--task enhance" in _pair_error("denoise", 1, data=x1)
    assert "--degradation render has no effect" in _pair_error("sr", 2, data=x2, degradation="render")
    assert "--task enhance learns" in _pair_error("enhance", 1)                       # bundled photos: no pairs
    assert "--task enhance learns" in _pair_error("enhance", 1, data=x1, val_data=_folder(tmp_path / "v", 2))


def test_val_sequence_keeps_the_clip_in_order_and_checks_it(tmp_path: Path) -> None:
    clip = _folder(tmp_path / "clip", 20)
    data = load_data("sr", 2, 16, val_data=clip, val_sequence=True)
    assert data.val_sequence and data.val_names == tuple(f"frame_{i:03d}.png" for i in range(16))  # first 16
    spread = load_data("sr", 2, 16, val_data=clip)
    assert not spread.val_sequence and spread.val_names[1] == "frame_001.png" and len(spread.val_names) == 16
    assert spread.data_id != data.data_id and data.describe()["val_sequence"] is True
    assert "--val-sequence needs an ordered clip" in _error(val_sequence=True)
    assert "at least 2" in _error(val_data=_folder(tmp_path / "one", 1), val_sequence=True)
    _write(clip / "frame_003.png", 80, 48, 3)
    assert "frame_003.png is 80x48" in _error(val_data=clip, val_sequence=True)
