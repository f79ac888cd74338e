"""How an HR frame becomes a network's input: the SR degradations and the denoising noise.

Degradation (``degradation``): SR inputs are made from the HR image cropped to a multiple of the
scale, as 8-bit frames: ``bicubic`` (default) an antialiased bicubic downscale; ``render`` point
sampling, every s-th pixel with no filter, as a game rendered at low resolution (aliased);
``render-jitter`` the same with a sub-pixel offset per frame (cycling over the s x s positions, as
temporal anti-aliasing jitters the camera); ``video`` bicubic then a JPEG round trip at
``jpeg_quality`` (Pillow, its default 4:2:0 chroma subsampling), as a compressed video link delivers.
Denoise inputs are the clean image plus Gaussian noise (sigma in 8-bit levels), clipped to [0, 1].
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nas.errors import UsageError
from nas.training.images import to_tensor

DEGRADATIONS = ("bicubic", "render", "render-jitter", "video")
DEFAULT_DEGRADATION = "bicubic"
DEFAULT_JPEG_QUALITY = 90  # NTIRE 2023 real-time SR fed JPEG q=90


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downscale of float (N,C,sH,sW) -> (N,C,H,W); sizes must divide by ``scale``."""
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    return F.interpolate(hr, size=(h, w), mode="bicubic", align_corners=False, antialias=True)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round float [0,1] to uint8 (a real low-resolution frame has 8 bits)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def make_lr(hr8: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 (3,H,W) with H, W multiples of ``scale`` -> uint8 (3,H/s,W/s) low-resolution input."""
    return quantize(downscale(hr8[None].float() / 255, scale))[0]


def point_sample(hr8: torch.Tensor, scale: int, offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Every ``scale``-th pixel of uint8 (3,sH,sW) from ``offset`` (dy, dx), no filter -> (3,H,W): aliased
    like a frame rendered at low resolution."""
    dy, dx = offset
    if not (0 <= dy < scale and 0 <= dx < scale):
        raise ValueError(f"offset {offset} must lie inside one {scale}x{scale} block")
    return hr8[:, dy::scale, dx::scale][:, : hr8.shape[1] // scale, : hr8.shape[2] // scale].contiguous()


def jpeg_roundtrip(img8: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode uint8 (3,H,W) as JPEG at ``quality`` with Pillow and decode it again (same shape)."""
    buf = io.BytesIO()
    Image.fromarray(img8.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return to_tensor(np.asarray(im.convert("RGB")))


def jitter_offset(index: int, scale: int) -> tuple[int, int]:
    """The sub-pixel offset of frame ``index`` under ``render-jitter``: the s x s positions in turn."""
    return (index // scale) % scale, index % scale


def degrade(hr8: torch.Tensor, scale: int, degradation: str, jpeg_quality: int = DEFAULT_JPEG_QUALITY,
            index: int = 0) -> torch.Tensor:
    """uint8 (3,sH,sW) -> the uint8 (3,H,W) input ``degradation`` makes of it (``index``: the frame's
    position in its list, for ``render-jitter``); ``video`` at scale 1 is the JPEG round trip alone."""
    if degradation == "bicubic":
        return make_lr(hr8, scale)
    if degradation == "render":
        return point_sample(hr8, scale)
    if degradation == "render-jitter":
        return point_sample(hr8, scale, jitter_offset(index, scale))
    if degradation == "video":
        return jpeg_roundtrip(make_lr(hr8, scale) if scale > 1 else hr8, jpeg_quality)
    raise ValueError(f"unknown degradation {degradation!r}")


def degradation_tag(degradation: str, jpeg_quality: int) -> str:
    """The canonical name of a degradation with its settings ("video-q90"), or a one-line UsageError."""
    if degradation not in DEGRADATIONS:
        raise UsageError(f"--degradation must be one of {', '.join(DEGRADATIONS)}, got {degradation!r}")
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 95:
        raise UsageError(f"--jpeg-quality must be an integer from 1 to 95 (Pillow's useful range), got {jpeg_quality}")
    return f"video-q{jpeg_quality}" if degradation == "video" else degradation


def add_noise(clean: torch.Tensor, sigma_8bit: float, generator: torch.Generator) -> torch.Tensor:
    """Clean float (N,C,H,W) in [0,1] + Gaussian noise of ``sigma_8bit`` levels, clipped to [0,1]."""
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
    return (clean + noise * (sigma_8bit / 255.0)).clamp(0, 1)
