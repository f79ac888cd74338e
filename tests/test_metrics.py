"""PSNR, SSIM, HFEN, shift consistency, flicker and the --loss parser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from nas.errors import UsageError
from nas.training.metrics import (
    STABILITY_CAP_DB,
    charbonnier_loss,
    hfen,
    l1_loss,
    log_kernel,
    parse_loss,
    psnr,
    shift_consistency,
    ssim,
    temporal_psnr,
    to_luma,
)
from search_spaces import ArchSpec, Conv, build


def _images(seed: int = 0, shape: tuple[int, ...] = (2, 3, 40, 48)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_psnr_known_values() -> None:
    ref = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    assert psnr(ref + 0.1, ref)[0].item() == pytest.approx(20.0, abs=1e-6)     # mse 0.01
    assert psnr(ref + 0.01, ref)[0].item() == pytest.approx(40.0, abs=1e-6)    # mse 1e-4
    assert math.isinf(psnr(ref, ref)[0].item())


def test_psnr_is_per_image_and_crops_the_border() -> None:
    ref = torch.zeros(2, 3, 12, 12)
    out = ref.clone()
    out[0] += 0.1
    out[1, :, :2, :] = 1.0  # error only in a 2-pixel border
    values = psnr(out, ref, border=2)
    assert values[0].item() == pytest.approx(20.0, abs=1e-6)
    assert math.isinf(values[1].item())
    assert math.isfinite(psnr(out, ref, border=1)[1].item())


def test_ssim_matches_scikit_image_on_luma() -> None:
    ref = _images(1, (1, 3, 48, 56))
    out = (ref + 0.3 * _images(2, (1, 3, 48, 56))).clamp(0, 1)
    y_out, y_ref = to_luma(out)[0, 0].double().numpy(), to_luma(ref)[0, 0].double().numpy()
    expected = structural_similarity(y_out, y_ref, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0)
    assert ssim(out, ref)[0].item() == pytest.approx(expected, abs=1e-6)
    assert ssim(ref, ref)[0].item() == pytest.approx(1.0, abs=1e-12)
    assert ssim(out, ref)[0].item() < 0.95


def test_hfen_zero_on_equal_positive_otherwise() -> None:
    ref = _images(3)
    assert hfen(ref, ref).item() == 0.0
    assert hfen(ref + 0.05 * _images(4), ref).item() > 0.0
    # a constant offset has no high frequencies: LoG is zero-sum, replicate padding adds no edges
    assert hfen(ref + 0.1, ref).item() < 1e-6
    assert abs(log_kernel().sum().item()) < 1e-12 and log_kernel().shape == (15, 15)


def test_l1_and_charbonnier() -> None:
    ref = torch.zeros(1, 1, 4, 4)
    assert l1_loss(ref + 0.25, ref).item() == pytest.approx(0.25)
    assert charbonnier_loss(ref + 0.25, ref).item() == pytest.approx(math.sqrt(0.25**2 + 1e-6))
    assert charbonnier_loss(ref, ref).item() == pytest.approx(1e-3)


def test_parse_loss_accepts() -> None:
    assert parse_loss("l1").terms == (("l1", 1.0),)
    assert parse_loss("l1+hfen:0.1").terms == (("l1", 1.0), ("hfen", 0.1))
    assert parse_loss(" Charbonnier + HFEN:0.10 ").canonical == "charbonnier+hfen:0.1"
    ref = _images(5)
    out = ref + 0.05 * _images(6)
    combined = parse_loss("l1+hfen:0.1")(out, ref).item()
    assert combined == pytest.approx(l1_loss(out, ref).item() + 0.1 * hfen(out, ref).item(), rel=1e-5)


@pytest.mark.parametrize("text", ["", "l3", "l1+", "l1+hfen:x", "hfen:0", "l1:-1", "l1:nan", "l1:inf", "l1+l1"])
def test_parse_loss_rejects_with_one_line(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_loss(text)
    message = str(info.value)
    assert "\n" not in message and "loss" in message


def test_luma_weights() -> None:
    x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert to_luma(x).item() == pytest.approx(0.299)
    assert np.allclose(to_luma(torch.ones(1, 3, 2, 2)).numpy(), 1.0)


# ---------------------------------------------------------------------- temporal stability
def _bicubic(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


def _frame(seed: int = 0, size: int = 64) -> torch.Tensor:
    return 0.3 + 0.4 * _images(seed, (1, 3, size, size))  # away from 0 and 1: clamping never acts


def test_shift_consistency_rewards_equivariance_and_punishes_position() -> None:
    x = _frame()
    assert shift_consistency(_bicubic, x, 2) == STABILITY_CAP_DB   # moves with the content: steady

    def columns(inp: torch.Tensor) -> torch.Tensor:
        """Bicubic plus +-0.05 alternating every input column: the output depends on absolute position."""
        out = _bicubic(inp)
        sign = (torch.arange(out.shape[-1]) // 2 % 2 * 2 - 1).to(out.dtype)
        return out + 0.05 * sign

    # a one-pixel move right flips the pattern (error 0.1 everywhere), a move down leaves it: MSE 0.01 / 2
    assert shift_consistency(columns, x, 2) == pytest.approx(-10 * math.log10(0.005), abs=1e-3)
    with pytest.raises(ValueError, match="too small"):
        shift_consistency(_bicubic, x[..., :32, :32], 2)


def _random_output(spec: ArchSpec) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build(spec).eval()
    torch.nn.init.normal_(net.out.weight, std=0.05)   # the output conv starts at zero: give it a voice
    return net


def test_space_to_depth_is_less_shift_consistent_than_plain_convs() -> None:
    plain = ArchSpec(space="sr", scale=2, upsample="bilinear", color="rgb", space_to_depth=1, head=(Conv(16, 3),))
    s2d = ArchSpec(space="sr", scale=2, upsample="bilinear", color="rgb", space_to_depth=2, head=(Conv(16, 3),))
    x = _frame(1)
    steady, aliased = shift_consistency(_random_output(plain), x, 2), shift_consistency(_random_output(s2d), x, 2)
    assert steady > 90 and aliased < steady - 20, (steady, aliased)


def test_temporal_psnr_sees_flicker_not_static_error() -> None:
    clip = [_frame(t) for t in range(4)]
    assert temporal_psnr(clip, clip) == STABILITY_CAP_DB
    assert temporal_psnr([f + 0.05 for f in clip], clip) == STABILITY_CAP_DB    # a steady cast does not flicker
    flicker = [f + 0.05 * (-1) ** t for t, f in enumerate(clip)]                # +-0.05 frame to frame
    assert temporal_psnr(flicker, clip) == pytest.approx(-10 * math.log10(0.1**2), abs=1e-4)  # float32 frames
    assert temporal_psnr(flicker, clip, border=2) == pytest.approx(-10 * math.log10(0.1**2), abs=1e-4)  # float32 frames
    with pytest.raises(ValueError, match="two or more"):
        temporal_psnr(clip[:1], clip[:1])
