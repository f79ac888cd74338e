"""The task's data for short training: frames (nas/training/images.py) made into inputs
(nas/training/degrade.py), fingerprinted, split, and cut into patches and validation crops.

Validation uses one fixed centre crop per image whose low-resolution side is a multiple of 16
(the largest ``size_multiple`` a spec can have) and at most 256, so every spec sees the same pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from nas.errors import UsageError
from nas.training.degrade import DEFAULT_DEGRADATION, DEFAULT_JPEG_QUALITY, add_noise, degradation_tag, degrade
from nas.training.images import Image8, load_folders, pair_scale

DATA_PROTOCOL = 1  # bump when loading, splitting, degradation or validation crops change
VAL_MULTIPLE = 16   # validation LR crops are multiples of this: every spec's size_multiple divides it
VAL_MAX_SIDE = 256  # cap on the validation LR crop side (keeps validation cheap on a CPU)
KINDS = ("sr", "denoise", "enhance")  # enhance: any same-size mapping, inputs from pairs (or JPEG)
TASK_OF_SCALE = {1: "enhance", 2: "sr2x", 3: "sr3x", 4: "sr4x"}


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
                "degradation": self.degradation, "train_paired": self.train_paired, "val_paired": self.val_paired,
                "val_sequence": self.val_sequence,
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
