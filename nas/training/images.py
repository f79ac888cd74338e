"""Reading training and validation frames: the bundled photos, a folder of frames, or input/target pairs.

Sources:
  * default: the colour photos bundled with scikit-image (load offline). Fixed split:
    validation = chelsea, coffee; training = astronaut, motorcycle left + right (one stereo pair,
    kept on the same side of the split), immunohistochemistry, hubble_deep_field, retina, rocket.
    The grey images are skipped.
  * ``data=clip.mp4`` (or .mov, .mkv, .webm, .avi, .m4v): the clip's frames in playing order, split and
    spread like a folder's files (nas/training/video.py); so is ``val_data=clip.mp4``.
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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nas.errors import UsageError
from nas.training.video import VideoFrame, is_video, list_frames, read_frames

DEFAULT_TRAIN = ("astronaut", "motorcycle_left", "motorcycle_right", "immunohistochemistry",
                 "hubble_deep_field", "retina", "rocket")
DEFAULT_VAL = ("chelsea", "coffee")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_VAL_FILES = 16
MAX_TRAIN_FILES = 256
PAIR_SCALES = (1, 2, 3, 4)


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


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (3,H,W) uint8, contiguous (np.array copies: PIL's arrays are read-only)."""
    return torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def load_default() -> tuple[list[Image8], list[Image8]]:
    """The bundled scikit-image photos as (train, val)."""
    train = [Image8(n, to_tensor(_bundled(n))) for n in DEFAULT_TRAIN]
    val = [Image8(n, to_tensor(_bundled(n))) for n in DEFAULT_VAL]
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
    return Image8(path.name, to_tensor(arr))


Item = tuple[Path, Path | None] | VideoFrame  # (image or target file, its paired input or None), or a clip's frame


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
    if is_video(root):
        return list(list_frames(root, flag))
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


def _read_items(items: list[Item], flag: str) -> list[Image8]:
    """The images of ``items`` in their order (a clip's chosen frames decoded in one pass)."""
    frames = read_frames([it for it in items if isinstance(it, VideoFrame)], flag)
    return [frames[it] if isinstance(it, VideoFrame) else _read_item(it, flag) for it in items]


def _read_item(item: tuple[Path, Path | None], flag: str) -> Image8:
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
        train = _read_items(_evenly(train_items, MAX_TRAIN_FILES), "--data")
        val = _read_items(val_items, "--data" if val_data is None else "--val-data")
        return train, val
    train, _ = load_default()
    return train, _read_items(_pick_val(_list_items(val_data, "--val-data"), val_sequence), "--val-data")


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
