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
  * paired: a folder holding ``input/`` and ``target/`` with files of matching names (extensions may
    differ: a JPEG input beside a PNG target) gives its own inputs, split in the same way. The scale
    (1-4) follows from the sizes, one per folder, and must be the task's; scale 1 is ``enhance``
    (any same-size mapping), whose classical base is the input itself. Patches and validation
    crops are cut at matching positions (the target's at ``scale`` times the input's).

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
PAIR_SCALES = (1, 2, 3, 4)
KINDS = ("sr", "denoise", "enhance")  # enhance: any same-size mapping, inputs from pairs (or JPEG)
TASK_OF_SCALE = {1: "enhance", 2: "sr2x", 3: "sr3x", 4: "sr4x"}


@dataclass(frozen=True)
class Image8:
    """One RGB image: ``pixels`` uint8 (3,H,W); ``name`` for messages and fingerprints; ``inp`` the
    paired input frame (uint8 (3,H/s,W/s)) when the image is the target of a pair."""

    name: str
    pixels: torch.Tensor
    inp: torch.Tensor | None = None


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


Item = tuple[Path, Path | None]  # (image or target file, its paired input file or None)


def _images_in(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def is_paired(folder: str | Path) -> bool:
    """True when ``folder`` holds ``input/`` and ``target/`` subfolders (paired frames)."""
    root = Path(folder).expanduser()
    return (root / "input").is_dir() and (root / "target").is_dir()


def _by_stem(files: list[Path], flag: str) -> dict[str, Path]:
    """Files by name without extension (an input may be a .jpg beside a .png target); a repeat is an error."""
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise UsageError(f"{flag} {f.parent}: {out[f.stem].name} and {f.name} share the name {f.stem!r}: "
                             "keep one file per frame")
        out[f.stem] = f
    return out


def _list_pairs(root: Path, flag: str) -> list[Item]:
    """The (target, input) files of a paired folder, matched by name, sorted by name."""
    targets, inputs = _by_stem(_images_in(root / "target"), flag), _by_stem(_images_in(root / "input"), flag)
    if not targets and not inputs:
        raise UsageError(f"{flag} {root}: input/ and target/ hold no .png/.jpg/.jpeg files: add frame pairs")
    for have, lack, side in ((targets, inputs, "input"), (inputs, targets, "target")):
        missing = sorted(set(have) - set(lack))
        if missing:
            other = "target" if side == "input" else "input"
            raise UsageError(f"{flag} {root}: {other}/{have[missing[0]].name} has no partner in {side}/ "
                             f"(expected {side}/{missing[0]}.*; {len(missing)} unmatched): pairs need matching names")
    return [(targets[k], inputs[k]) for k in sorted(targets)]


def _list_items(folder: str | Path, flag: str) -> list[Item]:
    root = Path(folder).expanduser()
    if not root.exists():
        raise UsageError(f"{flag} {root}: folder does not exist: pass a folder of PNG/JPEG frames")
    if not root.is_dir():
        raise UsageError(f"{flag} {root}: not a folder: pass a folder of PNG/JPEG frames")
    if is_paired(root):
        return _list_pairs(root, flag)
    files = _images_in(root)
    if not files:
        raise UsageError(f"{flag} {root}: no .png/.jpg/.jpeg files in this folder (nor input/ and target/ "
                         "subfolders of pairs): add frames or pick another folder")
    return [(f, None) for f in files]


def _evenly(items: list[Item], n: int) -> list[Item]:
    """At most ``n`` items, evenly spaced, first one included."""
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


def _read_item(item: Item, flag: str) -> Image8:
    """The image (or the target with its paired input) of one item."""
    target, inp = item
    im = _read_image(target, flag)
    if inp is None:
        return im
    return Image8(im.name, im.pixels, _read_image(inp, flag).pixels)


def _pick_val(items: list[Item], val_sequence: bool) -> list[Item]:
    """The validation items of a --val-data folder: the first ones in order for a clip, else an even spread."""
    return items[:MAX_VAL_FILES] if val_sequence else _evenly(items, MAX_VAL_FILES)


def load_folders(data: str | Path | None, val_data: str | Path | None,
                 val_sequence: bool = False) -> tuple[list[Image8], list[Image8]]:
    """(train, val) from user folders; a missing side comes from the bundled photos. With ``val_sequence``
    a --val-data folder gives its first MAX_VAL_FILES frames in order (a clip), not an even spread."""
    if data is None and val_data is None:
        return load_default()
    if data is not None:
        items = _list_items(data, "--data")
        if val_data is None:
            if len(items) < 2:
                raise UsageError(
                    f"--data {data}: holds 1 image, but training and validation need at least 2 "
                    "(add frames, or give a separate --val-data folder)"
                )
            n_val = min(MAX_VAL_FILES, max(1, len(items) // 10))
            train_items, val_items = items[:-n_val], items[-n_val:]
        else:
            train_items, val_items = items, _pick_val(_list_items(val_data, "--val-data"), val_sequence)
        train = [_read_item(it, "--data") for it in _evenly(train_items, MAX_TRAIN_FILES)]
        val_flag = "--data" if val_data is None else "--val-data"
        val = [_read_item(it, val_flag) for it in val_items]
        return train, val
    train, _ = load_default()
    val_items = _pick_val(_list_items(val_data, "--val-data"), val_sequence)
    return train, [_read_item(it, "--val-data") for it in val_items]


def pair_scale(images: list[Image8], flag: str) -> int | None:
    """The one integer scale (1-4) between the paired inputs and targets of ``images``; None when unpaired.
    Raises a one-line UsageError naming the pair whose sizes are not one scale apart, or a mix of scales."""
    scales: dict[int, str] = {}
    for im in images:
        if im.inp is None:
            return None
        (_, big_h, big_w), (_, h, w) = im.pixels.shape, im.inp.shape
        s = big_h // h
        if big_h != s * h or big_w != s * w or s not in PAIR_SCALES:
            raise UsageError(f"{flag}: pair {im.name}: input {w}x{h} and target {big_w}x{big_h} are not one "
                             f"integer scale ({', '.join(map(str, PAIR_SCALES))}) apart in both directions")
        scales.setdefault(s, im.name)
    if len(scales) > 1:
        shown = ", ".join(f"x{s} ({name})" for s, name in sorted(scales.items()))
        raise UsageError(f"{flag}: pairs of different scales in one folder: {shown}: keep one scale per folder")
    return next(iter(scales))


def fingerprint(train: list[Image8], val: list[Image8], degradation: str = DEFAULT_DEGRADATION,
                val_sequence: bool = False) -> str:
    """sha256 over the protocol version, the degradation and the clip flag (when not the defaults, so that
    default data keeps its id), the split, and every image's name, size and pixels."""
    h = hashlib.sha256(f"nas-data-v{DATA_PROTOCOL}".encode())
    if degradation != DEFAULT_DEGRADATION:
        h.update(f"|degradation|{degradation}|".encode())
    if val_sequence:
        h.update(b"|val-sequence|")
    for role, images in (("train", train), ("val", val)):
        for im in images:
            h.update(f"|{role}|{im.name}|{tuple(im.pixels.shape)}|".encode())
            h.update(im.pixels.numpy().tobytes())
            if im.inp is not None:
                h.update(f"|input|{tuple(im.inp.shape)}|".encode())
                h.update(im.inp.numpy().tobytes())
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

    ``train_hr`` are uint8 (3,H,W) targets cropped to a multiple of ``scale``; ``train_lr`` their
    uint8 inputs (paired, or degraded), empty for denoise (noise is drawn per step). ``val_hr`` /
    ``val_lr`` are the fixed validation crops (``val_lr`` empty for denoise: the trainer adds noise
    from a fixed seed).
    """

    kind: str  # one of KINDS
    scale: int
    train_names: tuple[str, ...]
    val_names: tuple[str, ...]
    train_hr: tuple[torch.Tensor, ...]
    train_lr: tuple[torch.Tensor, ...]
    val_hr: tuple[torch.Tensor, ...]
    val_lr: tuple[torch.Tensor, ...]
    data_id: str
    source: str  # "skimage" or the folder(s), for run.json
    degradation: str = DEFAULT_DEGRADATION  # degradation_tag(): how unpaired inputs were made
    train_paired: bool = False
    val_paired: bool = False
    val_sequence: bool = False  # the validation frames are an ordered clip (flicker is measured)

    @property
    def space_kind(self) -> str:
        """The ArchSpec ``space`` that fits this data: "sr", else the same-size "denoise" topology."""
        return "sr" if self.kind == "sr" else "denoise"

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for run.json."""
        return {"source": self.source, "data_id": self.data_id, "kind": self.kind, "scale": self.scale,
                "degradation": self.degradation, "train_paired": self.train_paired, "val_paired": self.val_paired, "val_sequence": self.val_sequence,
                "train": list(self.train_names), "val": list(self.val_names)}


def _check_pairs(images: list[Image8], flag: str, kind: str, scale: int) -> bool:
    """True when ``images`` are pairs (of the task's scale, else a one-line UsageError naming the right --task)."""
    found = pair_scale(images, flag)
    if found is None:
        return False
    task = TASK_OF_SCALE[found]
    if kind == "denoise":
        raise UsageError(f"{flag}: holds same-size input/target pairs, but --task denoise adds synthetic noise to "
                         "clean frames: use --task enhance to learn the pairs' own mapping")
    if found != scale:
        want = "enhance" if scale == 1 else f"sr{scale}x"
        raise UsageError(f"{flag}: pairs are x{found} apart (e.g. {images[0].name}) but --task {want} needs "
                         f"x{scale}: use --task {task}")
    return True


def _degrade_side(images: list[Image8], paired: bool, kind: str, scale: int, degradation: str,
                  jpeg_quality: int, val: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(targets, inputs) of one side: paired inputs as given, else made by ``degradation`` (none for denoise).
    Validation takes one centre crop per image (see ``val_crop``); training crops to a multiple of the scale."""
    hrs, lrs = [], []
    for index, im in enumerate(images):
        _, h, w = im.pixels.shape
        if paired:
            assert im.inp is not None
            if val:
                crop = val_crop(h // scale, w // scale, 1)
                assert crop is not None  # checked by the caller
                top, left, lh, lw = crop
                hrs.append(im.pixels[:, top * scale:(top + lh) * scale, left * scale:(left + lw) * scale].contiguous())
                lrs.append(im.inp[:, top:top + lh, left:left + lw].contiguous())
            else:
                hrs.append(im.pixels)
                lrs.append(im.inp)
            continue
        if val:
            crop = val_crop(h, w, scale)
            assert crop is not None  # checked by the caller
            top, left, lh, lw = crop
            hr = im.pixels[:, top:top + lh * scale, left:left + lw * scale].contiguous()
        else:
            hr = im.pixels[:, : h - h % scale, : w - w % scale].contiguous()
        hrs.append(hr)
        if kind != "denoise":
            lrs.append(degrade(hr, scale, degradation, jpeg_quality, index))
    return hrs, lrs


def _check_clip(val: list[Image8], flag: str) -> None:
    """A clip for --val-sequence: two or more frames, all of one size (one-line UsageError otherwise)."""
    if len(val) < 2:
        raise UsageError(f"--val-sequence: {flag} gives {len(val)} validation frame; a clip needs at least 2 "
                         "consecutive frames")
    first = val[0]
    for im in val[1:]:
        if im.pixels.shape != first.pixels.shape:
            raise UsageError(f"--val-sequence: {flag} frame {im.name} is {im.pixels.shape[2]}x{im.pixels.shape[1]}, "
                             f"but {first.name} is {first.pixels.shape[2]}x{first.pixels.shape[1]}: a clip's "
                             "frames share one size")


def load_data(kind: str, scale: int, patch_size: int, data: str | Path | None = None,
              val_data: str | Path | None = None, degradation: str = DEFAULT_DEGRADATION,
              jpeg_quality: int = DEFAULT_JPEG_QUALITY, val_sequence: bool = False) -> TaskData:
    """Load, split, check and degrade the images for one task.

    ``kind`` is "sr", "denoise" (synthetic noise on clean frames) or "enhance" (scale 1, inputs given by
    pairs, or JPEG-degraded with ``degradation="video"``). A folder holding ``input/`` and ``target/`` is
    paired: its inputs are used as they are, and its scale must be the task's. ``patch_size`` is the
    low-resolution (network input) patch side: every training image must be at least
    ``patch_size * scale`` on each side. ``val_sequence``: the validation frames, sorted by name, are an
    ordered clip of one size (the tail of --data, or the first frames of --val-data), so that flicker
    can be measured. Raises a one-line UsageError naming the file otherwise.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}")
    if kind != "sr" and scale != 1:
        raise ValueError(f"{kind} runs at scale 1")
    tag = degradation_tag(degradation, jpeg_quality)
    if kind == "denoise" and degradation != DEFAULT_DEGRADATION:
        raise UsageError(f"--degradation {degradation} makes low-resolution inputs: it applies to the "
                         "super-resolution tasks (sr2x, sr3x, sr4x), not to denoise (which adds --noise-sigma)")
    if val_sequence and data is None and val_data is None:
        raise UsageError("--val-sequence needs an ordered clip: give --val-data DIR (or --data DIR, whose last "
                         "frames by name validate) holding consecutive frames")
    train, val = load_folders(data, val_data, val_sequence)
    train_flag = "--data" if data is not None else "bundled data"
    val_flag = "--val-data" if val_data is not None else "--data"
    train_paired = _check_pairs(train, train_flag, kind, scale)
    val_paired = _check_pairs(val, val_flag, kind, scale)
    if train_paired and val_paired and degradation != DEFAULT_DEGRADATION:
        raise UsageError(f"--degradation {degradation} has no effect: every frame comes from input/ and target/ "
                         "pairs, whose inputs are used as they are: drop the flag")
    if kind == "enhance" and not (train_paired and val_paired) and degradation != "video":
        raise UsageError("--task enhance learns a same-size mapping from pairs: give --data DIR holding input/ and "
                         "target/ (and --val-data alike, or none), or --degradation video to learn JPEG repair")
    need = patch_size * scale
    for im in train:
        _, h, w = im.pixels.shape
        if h < need or w < need:
            raise UsageError(
                f"{train_flag}: image {im.name} is {w}x{h}, smaller than a training patch of {need}x{need} "
                f"(patch {patch_size} x scale {scale}): remove it or use a smaller patch size"
            )
    for im in val:
        _, h, w = im.pixels.shape
        if val_crop(h, w, scale) is None:
            side = VAL_MULTIPLE * scale
            raise UsageError(
                f"{val_flag}: validation image {im.name} is {w}x{h}, smaller than the {side}x{side} "
                "minimum for validation: remove it or use larger frames"
            )
    if val_sequence:
        _check_clip(val, val_flag)
    val_hr, val_lr = _degrade_side(val, val_paired, kind, scale, degradation, jpeg_quality, val=True)
    train_hr, train_lr = _degrade_side(train, train_paired, kind, scale, degradation, jpeg_quality, val=False)
    source = "skimage" if data is None and val_data is None else \
        f"data={data if data is not None else 'skimage'}, val_data={val_data if val_data is not None else '(split)'}"
    return TaskData(
        kind=kind, scale=scale,
        train_names=tuple(im.name for im in train), val_names=tuple(im.name for im in val),
        train_hr=tuple(train_hr), train_lr=tuple(train_lr),
        val_hr=tuple(val_hr), val_lr=tuple(val_lr),
        data_id=fingerprint(train, val, tag, val_sequence), source=source, degradation=tag,
        train_paired=train_paired, val_paired=val_paired, val_sequence=val_sequence,
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
            x = d.train_lr[i][:, top:top + p, left:left + p] if d.train_lr else y  # (3,p,p); denoise: y
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
        inp = data.val_lr[i][None].float() / 255 if data.val_lr else add_noise(tgt, noise_sigma, gen)
        pairs.append((inp, tgt))
    return pairs
