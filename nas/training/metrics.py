"""Image quality metrics (PSNR, SSIM), temporal stability (shift consistency, flicker) and training
losses (L1, MSE, Charbonnier, HFEN).

All functions take float tensors of shape (N, C, H, W) with values in [0, 1]. PSNR is computed
over RGB; SSIM on BT.601 luma (the usual choice for SR, where chroma carries little detail).
``parse_loss`` turns a ``--loss`` string such as ``"l1+hfen:0.1"`` into a callable loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nas.errors import UsageError
from search_spaces.registry import Registry

# Loss terms by the name ``--loss`` spells them (out, ref) -> scalar, in the order the help lists them.
LOSSES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("loss")

LUMA = (0.299, 0.587, 0.114)  # BT.601, no offset: Y in [0, 1] for RGB in [0, 1]


def shave(x: torch.Tensor, border: int) -> torch.Tensor:
    """Crop ``border`` pixels from each side of (N,C,H,W) (SR convention: border = scale)."""
    if border <= 0:
        return x
    return x[..., border:-border, border:-border]


def psnr(out: torch.Tensor, ref: torch.Tensor, border: int = 0) -> torch.Tensor:
    """Per-image PSNR in dB, shape (N,), over all channels, for images in [0, 1] (peak 1)."""
    if out.shape != ref.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(out.shape)} vs {tuple(ref.shape)}")
    err = (shave(out, border).double() - shave(ref, border).double()) ** 2
    mse = err.flatten(1).mean(dim=1)  # (N,)
    return 10.0 * torch.log10(1.0 / mse)  # inf for identical images


def to_luma(x: torch.Tensor) -> torch.Tensor:
    """RGB (N,3,H,W) -> luma (N,1,H,W); a single-channel input is returned unchanged."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalized 1-D Gaussian, shape (size,): the 2-D window is its outer product with itself."""
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(out: torch.Tensor, ref: torch.Tensor, border: int = 0) -> torch.Tensor:
    """Per-image SSIM, shape (N,), on luma: Gaussian window 11x11, sigma 1.5, K1=0.01, K2=0.03,
    data range 1, population statistics, averaged over the positions where the window fits
    (matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)`` on the same luma image)."""
    x = to_luma(shave(out, border)).double()  # (N,1,H,W)
    y = to_luma(shave(ref, border)).double()
    # The five local means in one pass: the window is separable (11 taps down, then 11 across, instead of
    # 121 per position: validation's SSIM at 270x480 was most of a short training's validation time).
    g = gaussian_kernel(11, 1.5).to(x.device)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)                      # (N,5,H,W)
    blurred = F.conv2d(stack, g.view(1, 1, 11, 1).expand(5, 1, 11, 1), groups=5)
    mu_x, mu_y, xx, yy, xy = F.conv2d(blurred, g.view(1, 1, 1, 11).expand(5, 1, 1, 11), groups=5).split(1, dim=1)
    c1, c2 = 0.01**2, 0.03**2
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y           # each (N,1,H-10,W-10)
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(dim=1)


# ---------------------------------------------------------------------- temporal stability
STABILITY_CAP_DB = 100.0  # an exactly steady output (float rounding only) scores this, not infinity
SHIFT_MARGIN = 16         # LR pixels left out at the crop edges, where zero padding sees different content
SHIFT_MULTIPLE = 16       # crop sides are multiples of this, so that every spec's size_multiple divides them


def _capped_db(mse: float) -> float:
    """10 log10(1 / mse) for images in [0, 1], at most STABILITY_CAP_DB."""
    return STABILITY_CAP_DB if mse <= 10 ** (-STABILITY_CAP_DB / 10) else -10.0 * math.log10(mse)


def shift_crops(h: int, w: int, margin: int = SHIFT_MARGIN, multiple: int = SHIFT_MULTIPLE) -> tuple[int, int] | None:
    """The crop (ch, cw) ``shift_consistency`` cuts from an h x w input: sides a multiple of ``multiple``
    leaving room for a one-pixel move, or None when too little is left beyond the margins to compare."""
    ch, cw = (h - 1) // multiple * multiple, (w - 1) // multiple * multiple
    if ch - 2 * margin - 1 < 8 or cw - 2 * margin - 1 < 8:
        return None
    return ch, cw


@torch.no_grad()
def shift_consistency(net: Callable[[torch.Tensor], torch.Tensor], inp: torch.Tensor, scale: int,
                      margin: int = SHIFT_MARGIN) -> float:
    """How steady the output of ``net`` stays when the camera pans by one input pixel, in dB (higher is steadier).

    Upscales a crop of ``inp`` (1,C,h,w) and the same crop moved by one low-resolution pixel (right, then
    down), moves the second output back by ``scale`` pixels and compares the two where both saw the same
    content (``margin`` input pixels from the crop edges left out): 10 log10(1 / MSE) over both moves, capped
    at STABILITY_CAP_DB. A shift-equivariant net (any stack of convolutions) scores the cap; one whose output
    depends on the absolute position (space-to-depth, strided levels that alias) scores lower.
    """
    crop = shift_crops(inp.shape[-2], inp.shape[-1], margin)
    if crop is None:
        raise ValueError(f"shift_consistency: input {tuple(inp.shape[-2:])} is too small for a margin of {margin}")
    ch, cw = crop
    s, m = scale, margin
    ref = net(inp[..., :ch, :cw]).clamp(0, 1).double()
    errs = []
    for dy, dx in ((0, 1), (1, 0)):
        moved = net(inp[..., dy:dy + ch, dx:dx + cw]).clamp(0, 1).double()
        a = ref[..., s * (m + dy):s * (ch - m), s * (m + dx):s * (cw - m)]
        b = moved[..., s * m:s * (ch - m - dy), s * m:s * (cw - m - dx)]
        errs.append(float(((a - b) ** 2).mean()))
    return _capped_db(sum(errs) / len(errs))


def temporal_psnr(outputs: list[torch.Tensor], targets: list[torch.Tensor], border: int = 0) -> float:
    """Flicker of an ordered clip, in dB (higher is steadier): how far the change between consecutive outputs
    departs from the change between consecutive targets, 10 log10(1 / MSE) over every step, border cropped,
    capped at STABILITY_CAP_DB. Needs no optical flow: a static error (a colour cast) costs nothing, an error
    that changes from frame to frame (flicker, crawling aliasing) costs its size."""
    if len(outputs) != len(targets) or len(outputs) < 2:
        raise ValueError(f"temporal_psnr: needs two or more (output, target) frames, "
                         f"got {len(outputs)}, {len(targets)}")
    errs = []
    for t in range(1, len(outputs)):
        d_out = shave(outputs[t], border).double() - shave(outputs[t - 1], border).double()
        d_tgt = shave(targets[t], border).double() - shave(targets[t - 1], border).double()
        if d_out.shape != d_tgt.shape:
            raise ValueError(f"temporal_psnr: frame {t} differs in size from frame {t - 1}")
        errs.append(float(((d_out - d_tgt) ** 2).mean()))
    return _capped_db(sum(errs) / len(errs))


# ---------------------------------------------------------------------- losses
@LOSSES.register("l1")
def l1_loss(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (out - ref).abs().mean()


@LOSSES.register("mse")
def mse_loss(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return ((out - ref) ** 2).mean()


@LOSSES.register("charbonnier")
def charbonnier_loss(out: torch.Tensor, ref: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Smooth L1: mean of sqrt(d^2 + eps^2); differentiable at 0, L1-like for large errors."""
    return torch.sqrt((out - ref) ** 2 + eps * eps).mean()


def log_kernel(size: int = 15, sigma: float = 1.5) -> torch.Tensor:
    """Laplacian-of-Gaussian, shape (size, size), shifted to zero sum (flat regions give 0)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    rr = (xx**2 + yy**2) / (2 * sigma**2)
    k = (rr - 1) / (math.pi * sigma**4) * torch.exp(-rr)
    return k - k.mean()


_LOG_CACHE: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _log_filter(x: torch.Tensor) -> torch.Tensor:
    """Depthwise LoG (15x15, sigma 1.5) of (N,C,H,W), replicate-padded to keep the size."""
    key = (x.device, x.dtype)
    if key not in _LOG_CACHE:
        _LOG_CACHE[key] = log_kernel().to(device=x.device, dtype=x.dtype).view(1, 1, 15, 15)
    c = x.shape[1]
    k = _LOG_CACHE[key].expand(c, 1, 15, 15)
    return F.conv2d(F.pad(x, (7, 7, 7, 7), mode="replicate"), k, groups=c)


@LOSSES.register("hfen")
def hfen(out: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """High-frequency error norm (Ravishankar and Bresler 2011): ||LoG(out - ref)||_2 / ||LoG(ref)||_2
    over the whole batch. 0 for equal images; used as a loss term and as a metric."""
    num = torch.linalg.vector_norm(_log_filter(out - ref))
    den = torch.linalg.vector_norm(_log_filter(ref))
    return num / (den + eps)




@dataclass(frozen=True)
class Loss:
    """A weighted sum of named loss terms, e.g. ((\"l1\", 1.0), (\"hfen\", 0.1))."""

    terms: tuple[tuple[str, float], ...]

    def __call__(self, out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        total = LOSSES.get(self.terms[0][0])(out, ref) * self.terms[0][1]
        for name, weight in self.terms[1:]:
            total = total + LOSSES.get(name)(out, ref) * weight
        return total

    @property
    def canonical(self) -> str:
        """The normalized spelling ("l1+hfen:0.1"): equal losses get equal strings."""
        return "+".join(name if w == 1.0 else f"{name}:{w:g}" for name, w in self.terms)


def parse_loss(text: str) -> Loss:
    """Parse ``--loss``: terms joined by '+', each ``name`` or ``name:weight`` (weight > 0, default 1).

    Raises UsageError (one line) for an unknown name, a bad or non-positive weight, a repeated term
    or an empty string.
    """
    known = ", ".join(LOSSES.names())
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"--loss is empty: give one or more of {known}, e.g. 'l1' or 'l1+hfen:0.1'")
    terms: list[tuple[str, float]] = []
    for part in text.replace(" ", "").lower().split("+"):
        name, sep, weight_text = part.partition(":")
        if name not in LOSSES:
            raise UsageError(f"--loss {text!r}: unknown loss {name!r}; known: {known} (e.g. 'l1+hfen:0.1')")
        weight = 1.0
        if sep:
            try:
                weight = float(weight_text)
            except ValueError:
                raise UsageError(
                    f"--loss {text!r}: weight {weight_text!r} of {name!r} is not a number (write {name}:0.1)"
                ) from None
            if not math.isfinite(weight) or weight <= 0:
                raise UsageError(f"--loss {text!r}: weight of {name!r} must be a positive number, got {weight_text}")
        if any(name == n for n, _ in terms):
            raise UsageError(f"--loss {text!r}: {name!r} appears twice; give each term once")
        terms.append((name, weight))
    return Loss(tuple(terms))
