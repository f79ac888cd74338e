"""Validation crops of the winner: bicubic, the winner and the ground truth, as inline PNGs."""

from __future__ import annotations

import base64
import io
from typing import Any

from nas.report.run import Run

CROP = 96  # side of the ground-truth crop shown, in output pixels


# ---------------------------------------------------------------------- the validation crops
def _validation_image(scale: int) -> tuple[Any, str]:
    """The first image of the default validation split (nas.training.data), centre-cropped as validation
    crops it, as a (1, 3, H, W) float tensor in [0, 1], and its name."""
    import skimage.data as skdata
    import torch

    from nas.training.data import val_crop
    from nas.training.images import DEFAULT_VAL

    name = DEFAULT_VAL[0]
    hr8 = torch.from_numpy(getattr(skdata, name)().copy()).permute(2, 0, 1)
    top, left, lr_h, lr_w = val_crop(hr8.shape[1], hr8.shape[2], scale)
    hr8 = hr8[:, top:top + lr_h * scale, left:left + lr_w * scale]
    return (hr8[None].float() / 255,
            f"scikit-image '{name}' (validation split), {lr_w * scale}x{lr_h * scale} centre crop")


def _png_b64(t: Any) -> str:
    import numpy as np
    from PIL import Image

    arr = (t[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def winner_crops(run: Run) -> dict[str, Any]:
    """Bicubic / winner / ground truth on a crop of a validation image, as base64 PNGs.

    Computed here from the winner's weights on the default validation image, degraded the way
    training validates (antialiased bicubic downscale, rounded to 8 bits). The crop is the window where
    bicubic errs most (most detail), not where the winner gains most. Returns {"error": text} when it
    cannot be shown.
    """
    import torch
    import torch.nn.functional as F

    from nas.rundir import FINAL_FILES, TRAIN_FILES
    from search_spaces import build

    win = run.winner()
    if win is None:
        return {"error": "no trained candidate, so no winner to show"}
    spec = run.specs.get(win.arch_id)
    folder = run.path / "archs" / win.arch_id
    weights = folder / FINAL_FILES[0]  # a finalist's longer training, else the short one's
    weights = weights if weights.is_file() else folder / TRAIN_FILES[0]
    if spec is None or not weights.is_file():
        return {"error": f"trial {win.number}: arch.json or weights.safetensors missing from the run dir"}
    if spec.space != "sr":
        return {"error": "validation crops are drawn for super-resolution runs only"}
    from safetensors.torch import load_file

    try:
        net = build(spec)
        net.load_state_dict(load_file(str(weights)))
    except (OSError, RuntimeError, ValueError) as exc:  # bad file or shapes that do not match the spec
        return {"error": f"trial {win.number}: weights do not load into its spec: {str(exc)[:300]}"}
    from nas.training.degrade import make_lr
    from nas.training.metrics import psnr as psnr_db
    from nas.training.train import baseline

    s = spec.scale
    hr, source = _validation_image(s)
    with torch.no_grad():
        lr = make_lr((hr[0] * 255).round().to(torch.uint8), s)[None].float() / 255  # as training validates
        bic = baseline(lr, "sr", s)
        out = net(lr).clamp(0, 1)

    def psnr(a: Any) -> float:
        return float(psnr_db(a, hr, border=s)[0])

    err = F.avg_pool2d((bic - hr).abs().mean(1, keepdim=True), CROP, stride=CROP // 4)
    iy, ix = divmod(int(err.flatten().argmax()), err.shape[3])
    y, x = iy * CROP // 4, ix * CROP // 4

    def crop(t: Any) -> str:
        return _png_b64(t[:, :, y:y + CROP, x:x + CROP])

    return {"source": source, "trial": int(win.number), "scale": s, "box": [y, x, CROP],
            "images": [("bicubic", crop(bic), psnr(bic)), (f"winner (trial {win.number})", crop(out), psnr(out)),
                       ("ground truth", crop(hr), None)]}
