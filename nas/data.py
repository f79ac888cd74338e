"""Image sources, degradations and patch sampling for short training.

Sources:
  * default: the colour photos bundled with scikit-image (load offline). Fixed split:
    validation = chelsea, coffee; training = astronaut, motorcycle left + right (one stereo pair,
    kept on the same side of the split), immunohistochemistry, hubble_deep_field, retina, rocket.
    The grey images are skipped.
  * ``data=DIR``: the PNG/JPEG files in DIR (not recursive), sorted by name. Without ``val_data``
    the last 10 % by name (at least 1, at most 16) validate and the rest train: a contiguous tail,
    so that neighbouring video frames do not end up on both sides. ``val_data=DIR`` gives a
    separate validation folder (then every file of ``data`` trains). At most 256 training files
    are used (evenly spaced by name) to bound memory.

Degradation (``degradation``): SR inputs are made from the HR image cropped to a multiple of the
scale, as 8-bit frames: ``bicubic`` (default) an antialiased bicubic downscale; ``render`` point
sampling, every s-th pixel with no filter, as a game rendered at low resolution (aliased);
``render-jitter`` the same with a sub-pixel offset per frame (cycling over the s x s positions, as
temporal anti-aliasing jitters the camera); ``video`` bicubic then a JPEG round trip at
``jpeg_quality`` (Pillow, its default 4:2:0 chroma subsampling), as a compressed video link delivers.
Denoise inputs are the clean image plus Gaussian noise (sigma in 8-bit levels), clipped to [0, 1].

Validation uses one fixed centre crop per image whose low-resolution side is a multiple of 16
(the largest ``size_multiple`` a spec can have) and at most 256, so every spec sees the same pixels.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from nas.errors import UsageError

DATA_PROTOCOL = 1  # bump when loading, splitting, degradation or validation crops change
DEFAULT_TRAIN = ("astronaut", "motorcycle_left", "motorcycle_right", "immunohistochemistry",
                 "hubble_deep_field", "retina", "rocket")
DEFAULT_VAL = ("chelsea", "coffee")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VAL_MULTIPLE = 16   # validation LR crops are multiples of this: every spec's size_multiple divides it
VAL_MAX_SIDE = 256  # cap on the validation LR crop side (keeps validation cheap on a CPU)
MAX_VAL_FILES = 16
MAX_TRAIN_FILES = 256
DEGRADATIONS = ("bicubic", "render", "render-jitter", "video")
DEFAULT_DEGRADATION = "bicubic"
DEFAULT_JPEG_QUALITY = 90  # NTIRE 2023 real-time SR fed JPEG q=90


@dataclass(frozen=True)
class Image8:
    """One RGB image: ``pixels`` uint8 (3,H,W); ``name`` for messages and fingerprints."""

    name: str
    pixels: torch.Tensor


def _bundled(name: str) -> np.ndarray:
    import skimage.data as sd

    if name.startswith("motorcycle_"):
        left, right, _disparity = sd.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(sd, name)()


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (3,H,W) uint8, contiguous."""
    return torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # np.array copies: PIL arrays are read-only


def load_default() -> tuple[list[Image8], list[Image8]]:
    """The bundled scikit-image photos as (train, val)."""
    train = [Image8(n, _to_tensor(_bundled(n))) for n in DEFAULT_TRAIN]
    val = [Image8(n, _to_tensor(_bundled(n))) for n in DEFAULT_VAL]
    return train, val


def _read_image(path: Path, flag: str) -> Image8:
    """Decode one PNG/JPEG as RGB uint8 (grey is replicated, alpha dropped, 16-bit rescaled)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = np.clip(np.round(arr / 65535.0 * 255.0), 0, 255).astype(np.uint8)
                arr = np.repeat(arr[:, :, None], 3, axis=2)
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UsageError(
            f"{flag}: cannot read image {path} ({type(exc).__name__}: {exc}): remove or re-save the file"
        ) from None
    return Image8(path.name, _to_tensor(arr))


def _list_images(folder: str | Path, flag: str) -> list[Path]:
    root = Path(folder).expanduser()
    if not root.exists():
        raise UsageError(f"{flag} {root}: folder does not exist: pass a folder of PNG/JPEG frames")
    if not root.is_dir():
        raise UsageError(f"{flag} {root}: not a folder: pass a folder of PNG/JPEG frames")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"{flag} {root}: no .png/.jpg/.jpeg files in this folder: add frames or pick another folder")
    return files


def _evenly(items: list[Path], n: int) -> list[Path]:
    """At most ``n`` items, evenly spaced, first one included."""
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


def load_folders(data: str | Path | None, val_data: str | Path | None) -> tuple[list[Image8], list[Image8]]:
    """(train, val) from user folders; a missing side comes from the bundled photos."""
    if data is None and val_data is None:
        return load_default()
    if data is not None:
        files = _list_images(data, "--data")
        if val_data is None:
            if len(files) < 2:
                raise UsageError(
                    f"--data {data}: holds 1 image, but training and validation need at least 2 "
                    "(add frames, or give a separate --val-data folder)"
                )
            n_val = min(MAX_VAL_FILES, max(1, len(files) // 10))
            train_files, val_files = files[:-n_val], files[-n_val:]
        else:
            train_files, val_files = files, _evenly(_list_images(val_data, "--val-data"), MAX_VAL_FILES)
        train = [_read_image(p, "--data") for p in _evenly(train_files, MAX_TRAIN_FILES)]
        val_flag = "--data" if val_data is None else "--val-data"
        val = [_read_image(p, val_flag) for p in val_files]
        return train, val
    train, _ = load_default()
    val_files = _evenly(_list_images(val_data, "--val-data"), MAX_VAL_FILES)
    return train, [_read_image(p, "--val-data") for p in val_files]


def fingerprint(train: list[Image8], val: list[Image8], degradation: str = DEFAULT_DEGRADATION) -> str:
    """sha256 over the protocol version, the degradation (when not the default, so that default data keeps
    its id), the split, and every image's name, size and pixels."""
    h = hashlib.sha256(f"nas-data-v{DATA_PROTOCOL}".encode())
    if degradation != DEFAULT_DEGRADATION:
        h.update(f"|degradation|{degradation}|".encode())
    for role, images in (("train", train), ("val", val)):
        for im in images:
            h.update(f"|{role}|{im.name}|{tuple(im.pixels.shape)}|".encode())
            h.update(im.pixels.numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------- degradation
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
        return _to_tensor(np.asarray(im.convert("RGB")))


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


def val_crop(h: int, w: int, scale: int) -> tuple[int, int, int, int] | None:
    """Centre crop of an HR image of h x w: (top, left, lr_h, lr_w), LR sides a multiple of 16 and
    at most 256; None when the image is too small for a 16x16 LR crop."""
    lr_h = min(h // scale, VAL_MAX_SIDE) // VAL_MULTIPLE * VAL_MULTIPLE
    lr_w = min(w // scale, VAL_MAX_SIDE) // VAL_MULTIPLE * VAL_MULTIPLE
    if lr_h == 0 or lr_w == 0:
        return None
    return (h - lr_h * scale) // 2, (w - lr_w * scale) // 2, lr_h, lr_w


# ---------------------------------------------------------------------- task data
@dataclass(frozen=True)
class TaskData:
    """Everything short training needs for one task, prepared once per search.

    ``train_hr`` are uint8 (3,H,W) images cropped to a multiple of ``scale``; for SR ``train_lr``
    are their uint8 downscales, for denoise ``train_lr`` is empty (noise is drawn per step).
    ``val_hr`` / ``val_lr`` are the fixed validation crops (``val_lr`` empty for denoise: the
    trainer adds noise from a fixed seed).
    """

    kind: str  # "sr" or "denoise"
    scale: int
    train_names: tuple[str, ...]
    val_names: tuple[str, ...]
    train_hr: tuple[torch.Tensor, ...]
    train_lr: tuple[torch.Tensor, ...]
    val_hr: tuple[torch.Tensor, ...]
    val_lr: tuple[torch.Tensor, ...]
    data_id: str
    source: str  # "skimage" or the folder(s), for run.json
    degradation: str = DEFAULT_DEGRADATION  # degradation_tag(): how SR inputs were made

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for run.json."""
        return {"source": self.source, "data_id": self.data_id, "kind": self.kind, "scale": self.scale,
                "degradation": self.degradation, "train": list(self.train_names), "val": list(self.val_names)}


def load_data(kind: str, scale: int, patch_size: int, data: str | Path | None = None,
              val_data: str | Path | None = None, degradation: str = DEFAULT_DEGRADATION,
              jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> TaskData:
    """Load, split, check and degrade the images for one task.

    ``patch_size`` is the low-resolution (network input) patch side: every training image must be
    at least ``patch_size * scale`` on each side. Raises UsageError naming the file otherwise.
    """
    if kind not in ("sr", "denoise"):
        raise ValueError(f"unknown task kind {kind!r}")
    if kind == "denoise" and scale != 1:
        raise ValueError("denoise runs at scale 1")
    tag = degradation_tag(degradation, jpeg_quality)
    if kind == "denoise" and degradation != DEFAULT_DEGRADATION:
        raise UsageError(f"--degradation {degradation} makes low-resolution inputs: it applies to the "
                         "super-resolution tasks (sr2x, sr3x, sr4x), not to denoise (which adds --noise-sigma)")
    train, val = load_folders(data, val_data)
    need = patch_size * scale
    for im in train:
        _, h, w = im.pixels.shape
        if h < need or w < need:
            flag = "--data" if data is not None else "bundled data"
            raise UsageError(
                f"{flag}: image {im.name} is {w}x{h}, smaller than a training patch of {need}x{need} "
                f"(patch {patch_size} x scale {scale}): remove it or use a smaller patch size"
            )
    val_hr, val_lr = [], []
    for index, im in enumerate(val):
        _, h, w = im.pixels.shape
        crop = val_crop(h, w, scale)
        if crop is None:
            flag = "--val-data" if val_data is not None else "--data"
            side = VAL_MULTIPLE * scale
            raise UsageError(
                f"{flag}: validation image {im.name} is {w}x{h}, smaller than the {side}x{side} "
                "minimum for validation: remove it or use larger frames"
            )
        top, left, lh, lw = crop
        hr = im.pixels[:, top:top + lh * scale, left:left + lw * scale].contiguous()
        val_hr.append(hr)
        if kind == "sr":
            val_lr.append(degrade(hr, scale, degradation, jpeg_quality, index))
    train_hr, train_lr = [], []
    for index, im in enumerate(train):
        _, h, w = im.pixels.shape
        hr = im.pixels[:, : h - h % scale, : w - w % scale].contiguous()
        train_hr.append(hr)
        if kind == "sr":
            train_lr.append(degrade(hr, scale, degradation, jpeg_quality, index))
    source = "skimage" if data is None and val_data is None else \
        f"data={data if data is not None else 'skimage'}, val_data={val_data if val_data is not None else '(split)'}"
    return TaskData(
        kind=kind, scale=scale,
        train_names=tuple(im.name for im in train), val_names=tuple(im.name for im in val),
        train_hr=tuple(train_hr), train_lr=tuple(train_lr),
        val_hr=tuple(val_hr), val_lr=tuple(val_lr),
        data_id=fingerprint(train, val, tag), source=source, degradation=tag,
    )


# ---------------------------------------------------------------------- patch sampling
class PatchSampler:
    """Random aligned (input, target) patches with flips (and optional 90-degree rotations),
    deterministic for a seed. Images are drawn uniformly (not by area), positions uniformly."""

    def __init__(self, data: TaskData, patch_size: int, seed: int, rotate: bool = False,
                 noise_sigma: float = 0.0) -> None:
        self.data, self.p, self.rotate, self.sigma = data, patch_size, rotate, noise_sigma
        self.gen = torch.Generator().manual_seed(seed)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.gen))

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input (n,3,p,p), target (n,3,p*s,p*s)), float32 in [0,1], on the CPU."""
        d, p, s = self.data, self.p, self.data.scale
        xs, ys = [], []
        for _ in range(n):
            i = self._randint(len(d.train_hr))
            hr = d.train_hr[i]
            lh, lw = hr.shape[1] // s, hr.shape[2] // s
            top, left = self._randint(lh - p + 1), self._randint(lw - p + 1)
            y = hr[:, top * s:(top + p) * s, left * s:(left + p) * s]           # (3,ps,ps)
            x = d.train_lr[i][:, top:top + p, left:left + p] if d.kind == "sr" else y  # (3,p,p)
            flips = int(torch.randint(8 if self.rotate else 4, (1,), generator=self.gen))
            if flips & 1:
                x, y = x.flip(-1), y.flip(-1)
            if flips & 2:
                x, y = x.flip(-2), y.flip(-2)
            if flips & 4:
                x, y = x.transpose(-1, -2), y.transpose(-1, -2)  # with the flips: all 8 rotations/reflections
            xs.append(x)
            ys.append(y)
        inp = torch.stack(xs).float() / 255
        tgt = torch.stack(ys).float() / 255
        if d.kind == "denoise":
            inp = add_noise(tgt, self.sigma, self.gen)
        return inp, tgt


VAL_NOISE_SEED = 12345  # fixed: every candidate and every training seed is validated on the same noise


def val_pairs(data: TaskData, noise_sigma: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The validation set as [(input (1,3,h,w), target (1,3,h*s,w*s))], float32 in [0,1].
    Denoise inputs get noise of ``noise_sigma`` levels from a fixed seed."""
    gen = torch.Generator().manual_seed(VAL_NOISE_SEED)
    pairs = []
    for i, hr8 in enumerate(data.val_hr):
        tgt = hr8[None].float() / 255
        inp = data.val_lr[i][None].float() / 255 if data.kind == "sr" else add_noise(tgt, noise_sigma, gen)
        pairs.append((inp, tgt))
    return pairs
