"""Full training of the exported network: ``python train.py --data DIR``.

Standalone: needs PyTorch, NumPy and Pillow (the ONNX export at the end also needs the ``onnx``
package; safetensors is used when installed). It trains with the same degradation, loss and
validation as the search that found the network, on a longer schedule: Adam, a linear warm-up
then cosine decay, random patches with flips, validation PSNR against the classical baseline
(bicubic upscaling, or the noisy input for denoising), checkpoints that ``--resume`` continues
from, and the fp16 (TensorRT-ready) and fp32 ONNX graphs at the end. With ``--reparam`` (the
search's kind by default) each conv trains as a re-parameterized block at the cost of one conv, and
what is saved is the collapsed plain net that model.py loads.

Outputs in ``--out``: ``last.pt`` (weights, optimizer, step and RNG state as tensors and plain
types: it loads with ``torch.load(weights_only=True)``), ``best`` weights (best validation PSNR),
``model`` weights (final), ``model.onnx``, ``model_fp32.onnx`` and ``log.csv``. Only ``last.pt``
holds the re-parameterized branches; every other file is model.py's plain net.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# isort: split
from model import (
    ARCH_ID,
    INPUT_SIZE,
    SCALE,
    SIZE_MULTIPLE,
    build_model,
    load_weights,
)
from reparam import KINDS as REPARAM_KINDS
from reparam import collapse, fan_ins, reparameterize

# --- settings from the search (nas export writes this block) ---
LOSS = "l1"
NOISE_SIGMA = 25.0
PATCH = 48
BATCH = 16
LR = 2e-3
WARMUP = 20
LR_FAN_IN = 144  # conv weights with a larger fan-in train at LR * sqrt(LR_FAN_IN / fan-in)
ROTATE = False
REPARAM = "none"  # each conv trains as this re-parameterized block (reparam.py); weights are saved collapsed
ADD_NOISE = False  # denoising: an unpaired image's input is the image with Gaussian noise of NOISE_SIGMA
DEGRADATION = "bicubic"  # how an unpaired image becomes an input: bicubic, render, render-jitter or video
JPEG_QUALITY = 90  # DEGRADATION video
PRECISION = "fp32"  # int8: the training ends quantization-aware and writes the QDQ graph model_int8.onnx
# --- end of settings ---

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LOSS_NAMES = ("l1", "mse", "charbonnier", "hfen")
CHARBONNIER_EPS = 1e-3
VAL_MULTIPLE, VAL_MAX_SIDE, MAX_VAL_FILES = 16, 256, 16  # validation crops, as in the search
VAL_NOISE_SEED = 12345  # every validation sees the same noise
HERE = Path(__file__).resolve().parent


def fail(message: str) -> None:
    """Stop with one clear line and exit code 2 (bad input)."""
    print(f"train.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


# ------------------------------------------------------------------------------------------ data
def image_files(folder: Path, flag: str) -> list[Path]:
    """The PNG/JPEG files directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        fail(f"{flag} {folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        fail(f"{flag} {folder}: no .png/.jpg/.jpeg files in this folder")
    return files


def load_image(path: Path) -> torch.Tensor:
    """An image file -> uint8 (3, H, W) RGB (grey replicated, alpha dropped, 16-bit rescaled)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                grey = np.clip(np.round(np.asarray(im, dtype=np.float64) / 65535.0 * 255.0), 0, 255)
                array = np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
            else:
                array = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:
        fail(f"cannot read image {path} ({type(exc).__name__}: {exc}): remove or re-save the file")
    return torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).contiguous()


def make_input(target: torch.Tensor, index: int = 0) -> torch.Tensor:
    """The search's degradation (DEGRADATION) of a target: uint8 (3, sH, sW) -> uint8 (3, H, W).

    bicubic: antialiased bicubic downscale by SCALE, rounded to 8 bits; render: every SCALE-th pixel,
    no filter (aliased, as a frame rendered at low resolution); render-jitter: the same from a
    sub-pixel offset that cycles with the frame ``index``; video: bicubic, then JPEG at JPEG_QUALITY.
    Denoising inputs get their noise per batch instead.
    """
    h, w = target.shape[-2] // SCALE, target.shape[-1] // SCALE
    if DEGRADATION in ("render", "render-jitter"):
        dy, dx = ((index // SCALE) % SCALE, index % SCALE) if DEGRADATION == "render-jitter" else (0, 0)
        return target[:, dy::SCALE, dx::SCALE][:, :h, :w].contiguous()
    low = target
    if SCALE > 1:
        small = F.interpolate(target[None].float() / 255, size=(h, w), mode="bicubic", align_corners=False,
                              antialias=True)
        low = (small[0].clamp(0, 1) * 255).round().to(torch.uint8)
    return jpeg_roundtrip(low, JPEG_QUALITY) if DEGRADATION == "video" else low


def jpeg_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode uint8 (3, H, W) as JPEG at ``quality`` (Pillow) and decode it again."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as im:
        return torch.from_numpy(np.array(im.convert("RGB"), copy=True)).permute(2, 0, 1).contiguous()


def add_noise(clean: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise of ``sigma`` 8-bit levels, clipped to [0, 1] (the search's denoising input)."""
    return (clean + torch.randn(clean.shape, generator=gen) * (sigma / 255.0)).clamp(0, 1)


# A training item: one image (its input is made by the degradation) or an (input, target) pair of files.
Item = Path | tuple[Path, Path]


def load_pair(item: Item, index: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(input, target, paired) as uint8, the target cropped to SCALE x the input (a pair must be exactly
    that: one integer scale apart)."""
    if isinstance(item, Path):
        image = load_image(item)
        target = image[:, :image.shape[-2] // SCALE * SCALE, :image.shape[-1] // SCALE * SCALE].contiguous()
        return make_input(target, index), target, False
    inp, target = load_image(item[0]), load_image(item[1])
    if target.shape[-2:] != (inp.shape[-2] * SCALE, inp.shape[-1] * SCALE):
        fail(f"pair {item[0].name}: input {inp.shape[-1]}x{inp.shape[-2]} and target "
             f"{target.shape[-1]}x{target.shape[-2]} are not {SCALE}x apart (this network's scale)")
    return inp, target, True


class TrainSet:
    """Training images in memory as uint8 (input, target) pairs; random aligned patches."""

    def __init__(self, items: list[Item], patch: int) -> None:
        self.inputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.paired = False
        for index, item in enumerate(items):
            inp, target, self.paired = load_pair(item, index)
            if min(inp.shape[-2:]) < patch:
                name = item if isinstance(item, Path) else item[0]
                fail(f"--data: image {name} gives a {inp.shape[-1]}x{inp.shape[-2]} input, smaller than a "
                     f"training patch of {patch}x{patch}: remove it or lower --patch")
            self.inputs.append(inp)
            self.targets.append(target)

    def batch(self, size: int, patch: int, sigma: float, rotate: bool,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(input (size, 3, p, p), target (size, 3, p*s, p*s)), float32 in [0, 1]."""
        xs, ys = [], []
        for _ in range(size):
            i = int(torch.randint(len(self.targets), (1,), generator=gen))
            x_full, y_full = self.inputs[i], self.targets[i]
            top = int(torch.randint(x_full.shape[-2] - patch + 1, (1,), generator=gen))
            left = int(torch.randint(x_full.shape[-1] - patch + 1, (1,), generator=gen))
            x = x_full[:, top:top + patch, left:left + patch]
            y = y_full[:, top * SCALE:(top + patch) * SCALE, left * SCALE:(left + patch) * SCALE]
            flips = int(torch.randint(8 if rotate else 4, (1,), generator=gen))
            if flips & 1:
                x, y = x.flip(-1), y.flip(-1)
            if flips & 2:
                x, y = x.flip(-2), y.flip(-2)
            if flips & 4:
                x, y = x.transpose(-1, -2), y.transpose(-1, -2)
            xs.append(x)
            ys.append(y)
        inp, tgt = torch.stack(xs).float() / 255, torch.stack(ys).float() / 255
        if ADD_NOISE and not self.paired:
            inp = add_noise(tgt, sigma, gen)
        return inp, tgt


def val_pairs(items: list[Item], sigma: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed validation pairs [(input (1,3,h,w), target (1,3,sh,sw))]: a centre crop per image whose
    input side is a multiple of 16 and at most 256 (the search's protocol), at matching positions in a pair."""
    gen = torch.Generator().manual_seed(VAL_NOISE_SEED)
    pairs = []
    for index, item in enumerate(items):
        if isinstance(item, Path):
            image = load_image(item)
            lh = min(image.shape[-2] // SCALE, VAL_MAX_SIDE) // VAL_MULTIPLE * VAL_MULTIPLE
            lw = min(image.shape[-1] // SCALE, VAL_MAX_SIDE) // VAL_MULTIPLE * VAL_MULTIPLE
            top, left = (image.shape[-2] - lh * SCALE) // 2, (image.shape[-1] - lw * SCALE) // 2
        else:
            inp, image, _ = load_pair(item, index)
            lh = min(inp.shape[-2], VAL_MAX_SIDE) // VAL_MULTIPLE * VAL_MULTIPLE
            lw = min(inp.shape[-1], VAL_MAX_SIDE) // VAL_MULTIPLE * VAL_MULTIPLE
            top, left = (inp.shape[-2] - lh) // 2 * SCALE, (inp.shape[-1] - lw) // 2 * SCALE
        if lh == 0 or lw == 0:
            side = VAL_MULTIPLE * SCALE
            fail(f"validation image {item} is smaller than the {side}x{side} minimum for validation")
        target = image[:, top:top + lh * SCALE, left:left + lw * SCALE].contiguous()
        tgt = target[None].float() / 255
        if isinstance(item, tuple):
            x = inp[None, :, top // SCALE:top // SCALE + lh, left // SCALE:left // SCALE + lw].float() / 255
        elif ADD_NOISE:
            x = add_noise(tgt, sigma, gen)
        else:
            x = make_input(target, index)[None].float() / 255
        pairs.append((x, tgt))
    return pairs


def folder_items(folder: Path, flag: str) -> list[Item]:
    """The images of ``folder``, or its pairs when it holds input/ and target/ (files matched by name)."""
    if not (folder / "input").is_dir() or not (folder / "target").is_dir():
        return list(image_files(folder, flag))
    targets = {p.stem: p for p in image_files(folder / "target", flag)}
    items: list[Item] = []
    for inp in image_files(folder / "input", flag):
        if inp.stem not in targets:
            fail(f"{flag} {folder}: input/{inp.name} has no partner in target/ (name the pair alike)")
        items.append((inp, targets[inp.stem]))
    return items


def split_files(data: Path, val_data: Path | None) -> tuple[list[Item], list[Item]]:
    """Without --val-data the last 10 % by name (1 to 16 images or pairs) validate, as in the search."""
    items = folder_items(data, "--data")
    if val_data is not None:
        return items, folder_items(val_data, "--val-data")[:MAX_VAL_FILES]
    if len(items) < 2:
        fail(f"--data {data}: holds 1 image, but training and validation need at least 2 "
             "(add images, or give a separate --val-data folder)")
    n_val = min(MAX_VAL_FILES, max(1, len(items) // 10))
    return items[:-n_val], items[-n_val:]


# ------------------------------------------------------------------------------------------ losses
def log_kernel(size: int = 15, sigma: float = 1.5) -> torch.Tensor:
    """Laplacian-of-Gaussian (size x size), shifted to zero sum, for HFEN."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    rr = (xx**2 + yy**2) / (2 * sigma**2)
    k = (rr - 1) / (math.pi * sigma**4) * torch.exp(-rr)
    return k - k.mean()


def log_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise LoG of (N, C, H, W), replicate-padded to keep the size."""
    c, pad = x.shape[1], kernel.shape[-1] // 2
    k = kernel.to(device=x.device, dtype=x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), k, groups=c)


def parse_loss(text: str) -> list[tuple[str, float]]:
    """``l1``, ``charbonnier``, ``l1+hfen:0.1``: terms joined by '+', each ``name[:weight]``."""
    terms: list[tuple[str, float]] = []
    for part in text.replace(" ", "").lower().split("+"):
        name, sep, weight_text = part.partition(":")
        if name not in LOSS_NAMES or any(name == n for n, _ in terms):
            fail(f"--loss {text!r}: {name!r} is unknown or repeated; use {', '.join(LOSS_NAMES)} once each")
        try:
            weight = float(weight_text) if sep else 1.0
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0):
            fail(f"--loss {text!r}: the weight of {name!r} must be a positive number")
        terms.append((name, weight))
    return terms


def make_loss(text: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A weighted sum of L1, MSE, Charbonnier (eps 1e-3) and HFEN terms, as in the search."""
    terms, kernel = parse_loss(text), log_kernel()

    def term(name: str, out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if name == "l1":
            return (out - ref).abs().mean()
        if name == "mse":
            return ((out - ref) ** 2).mean()
        if name == "charbonnier":
            return torch.sqrt((out - ref) ** 2 + CHARBONNIER_EPS**2).mean()
        # HFEN (Ravishankar and Bresler 2011): ||LoG(out - ref)|| / ||LoG(ref)|| over the batch
        num = torch.linalg.vector_norm(log_filter(out - ref, kernel))
        return num / (torch.linalg.vector_norm(log_filter(ref, kernel)) + 1e-8)

    def loss(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        total = term(terms[0][0], out, ref) * terms[0][1]
        for name, weight in terms[1:]:
            total = total + term(name, out, ref) * weight
        return total

    return loss


# ------------------------------------------------------------------------------------------ validation
def psnr(out: torch.Tensor, ref: torch.Tensor, border: int) -> float:
    """PSNR in dB over RGB (peak 1), ``border`` pixels cropped from each side."""
    if border:
        out, ref = out[..., border:-border, border:-border], ref[..., border:-border, border:-border]
    mse = float(((out.double() - ref.double()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


@torch.no_grad()
def validate(model: torch.nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device) -> tuple[float, float]:
    """Mean PSNR of the network (output clamped) and of the classical baseline: bicubic upscaling
    for super-resolution, the noisy input for denoising. Border cropped by the scale for SR."""
    model.eval()
    border = SCALE if SCALE > 1 else 0
    net_db, base_db = [], []
    for inp, tgt in pairs:
        out = model(inp.to(device)).float().cpu().clamp(0, 1)
        base = inp if SCALE == 1 else F.interpolate(inp, scale_factor=SCALE, mode="bicubic", align_corners=False)
        net_db.append(psnr(out, tgt, border))
        base_db.append(psnr(base.clamp(0, 1), tgt, border))
    model.train()
    return float(np.mean(net_db)), float(np.mean(base_db))


# ------------------------------------------------------------------------------------------ saving
def save_weights(model: torch.nn.Module, stem: Path) -> Path:
    """Collapsed weights (model.py's keys) as ``stem.safetensors`` (when installed) or ``stem.pt``."""
    plain = collapse(copy.deepcopy(model))
    state = {k: v.detach().float().cpu().contiguous() for k, v in plain.state_dict().items()}
    try:
        from safetensors.torch import save_file
    except ImportError:
        path = stem.with_suffix(".pt")
        torch.save(state, path)
    else:
        path = stem.with_suffix(".safetensors")
        save_file(state, str(path))
    return path


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    gen: torch.Generator, best_db: float, reparam: str) -> None:
    """Everything --resume needs, as tensors and plain types (loads with weights_only=True)."""
    state = {
        "arch_id": ARCH_ID, "reparam": reparam, "step": step, "best_psnr_db": best_db, "rng": gen.get_state(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def export_onnx(model: torch.nn.Module, path: Path, size: tuple[int, int], fp16: bool) -> None:
    """A fixed-shape ONNX graph of the collapsed net; fp16 means fp16 weights, input and output."""
    dtype = torch.float16 if fp16 else torch.float32
    net = collapse(copy.deepcopy(model)).to(device="cpu", dtype=dtype).eval()
    example = torch.rand(1, 3, *size, dtype=dtype)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=18,
                          input_names=["input"], output_names=["output"], do_constant_folding=True)


# ------------------------------------------------------------------------------------------ int8
WEIGHT_LEVELS = 63  # per-channel symmetric weights in 7 bits, as the search's int8 graph (ONNX Runtime on AVX2)


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric fake quantization of a conv weight (straight-through gradient)."""
    scale = (w.detach().abs().amax(dim=(1, 2, 3)) / WEIGHT_LEVELS).clamp_min(1e-8).float()
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -128, 127)  # |w| / scale <= 63


def fake_quant_input(x: torch.Tensor, lo: float, hi: float, symmetric: bool) -> torch.Tensor:
    """An activation fake-quantized over [lo, hi]: uint8 (ONNX Runtime) or int8 with zero point 0 (TensorRT)."""
    if symmetric:
        scale = max(max(abs(lo), abs(hi)) / 127.0, 1e-8)
        return torch.fake_quantize_per_tensor_affine(x, scale, 0, -128, 127)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    return torch.fake_quantize_per_tensor_affine(x, scale, int(min(255, max(0, round(-lo / scale)))), 0, 255)


def fake_quantize(model: torch.nn.Module, calibration: torch.Tensor, symmetric: bool) -> None:
    """Make every conv of the (collapsed) model quantize its input, over the range seen on ``calibration``, and its
    weights: quantization-aware training, and a graph that torch.onnx exports with QuantizeLinear/DequantizeLinear."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    ranges: dict[int, list[float]] = {}

    def observe(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        r = ranges.setdefault(id(module), [math.inf, -math.inf])
        r[0], r[1] = min(r[0], float(args[0].min())), max(r[1], float(args[0].max()))

    hooks = [c.register_forward_pre_hook(observe) for c in convs]
    with torch.no_grad():
        model(calibration)
    for h in hooks:
        h.remove()

    def forward(self: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        lo, hi = ranges[id(self)]
        return self._conv_forward(fake_quant_input(x, lo, hi, symmetric), fake_quant_weight(self.weight), self.bias)

    for c in convs:
        c.forward = forward.__get__(c)


def train_qat(model: torch.nn.Module, train: TrainSet, args: argparse.Namespace, device: torch.device,
              gen: torch.Generator) -> torch.nn.Module:
    """The last phase of an int8 training: ``--qat-steps`` steps of the collapsed net, fake-quantized, at a tenth of
    the learning rate decaying to zero. Returns the fake-quantized net (export it to get the QDQ graph)."""
    model = collapse(model).to(device).train()
    calibration, _ = train.batch(32, args.patch, args.noise_sigma, False, gen)
    fake_quantize(model, calibration.to(device), args.trt_int8)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr * 0.1)
    loss_fn = make_loss(args.loss)
    for step in range(args.qat_steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * 0.1 * 0.5 * (1 + math.cos(math.pi * step / args.qat_steps))
        x, y = train.batch(args.batch_size, args.patch, args.noise_sigma, args.rotate, gen)
        loss = loss_fn(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % args.log_every == 0 or step + 1 == args.qat_steps:
            print(f"train.py: QAT step {step + 1}/{args.qat_steps} loss {float(loss.detach()):.5f}")
    return model


def export_int8(model: torch.nn.Module, path: Path, size: tuple[int, int]) -> None:
    """The QDQ graph of a fake-quantized net: torch.onnx writes each fake quantization as QuantizeLinear and
    DequantizeLinear (fp32 input and output; height and width free)."""
    net = model.to("cpu").eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 3, *size),), str(path), dynamo=False, opset_version=18,
                          input_names=["input"], output_names=["output"], do_constant_folding=True,
                          dynamic_axes={"input": {2: "height", 3: "width"}, "output": {2: "oh", 3: "ow"}})


# ------------------------------------------------------------------------------------------ training
def param_groups(model: torch.nn.Module, fan_in_ref: int) -> list[dict]:
    """Adam groups, each with an ``lr_scale``: sqrt(fan_in_ref / F) for conv weights of fan-in F > fan_in_ref.

    Adam moves each weight by about lr per step, which shifts a wide conv's pre-activations by ~lr * F
    against a spread of ~sqrt(F): without the scale, deep nets with 5x5/48+ layers lose every ReLU early.
    A re-parameterized conv's branch weights all take that conv's fan-in.
    """
    groups = []
    for param, fan_in in fan_ins(model):
        scale = math.sqrt(fan_in_ref / fan_in) if fan_in_ref and fan_in > fan_in_ref else 1.0
        groups.append({"params": [param], "lr_scale": scale})
    return groups


def lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 (0-based ``step``)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * t))


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        fail(f"--onnx-size must look like 540x960, got {text!r}")
    if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        fail(f"--onnx-size {text}: height and width must be positive multiples of {SIZE_MULTIPLE}")
    return h, w


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        fail(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda, but PyTorch sees no CUDA GPU")
    return device


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, required=True,
                   help="folder of training images (PNG/JPEG), or of pairs: DIR/input/ and DIR/target/ with "
                   "matching names (the target SCALE x the input)")
    p.add_argument("--val-data", type=Path,
                   help="folder of validation images (default: the last 10%% of --data by name)")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="folder for checkpoints and results")
    p.add_argument("--steps", type=int, default=50_000, help="optimizer steps in all")
    p.add_argument("--batch-size", type=int, default=BATCH)
    p.add_argument("--patch", type=int, default=PATCH, help="input patch side, in input pixels")
    p.add_argument("--lr", type=float, default=LR, help="peak learning rate (Adam)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up steps (default: the search's, or 1%% of --steps if more, at most 2000)")
    p.add_argument("--loss", default=LOSS, help="terms joined by '+', each name[:weight]: " + ", ".join(LOSS_NAMES))
    p.add_argument("--noise-sigma", type=float, default=NOISE_SIGMA, help="denoising noise sigma, 8-bit levels")
    p.add_argument("--reparam", choices=REPARAM_KINDS, default=REPARAM,
                   help="train each conv as this re-parameterized block (saved collapsed: plain convs)")
    p.add_argument("--rotate", action=argparse.BooleanOptionalAction, default=ROTATE,
                   help="also transpose patches (all 8 rotations/reflections)")
    p.add_argument("--weights", type=Path, default=HERE / "model.safetensors",
                   help="initial weights (the search's short training); not used with --scratch or --resume")
    p.add_argument("--scratch", action="store_true", help="start from a fresh initialization")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT (default: OUT/last.pt)")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="checkpoint and stop after STEP (a job's time limit); --resume continues the schedule")
    p.add_argument("--val-every", type=int, default=2000)
    p.add_argument("--ckpt-every", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--onnx-size", default=f"{INPUT_SIZE[0]}x{INPUT_SIZE[1]}", help="ONNX input HxW")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export at the end")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--qat-steps", type=int, default=None,
                   help="quantization-aware steps after --steps, ending with model_int8.onnx (default: a fifth of "
                   "--steps when the search chose int8, else 0)")
    p.add_argument("--trt-int8", action="store_true",
                   help="int8 activations with zero point 0 in model_int8.onnx, as TensorRT needs (default: uint8, "
                   "ONNX Runtime)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "patch", "val_every", "ckpt_every", "log_every", "stop_at"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be a positive integer")
    if args.patch % SIZE_MULTIPLE:
        fail(f"--patch must be a multiple of {SIZE_MULTIPLE} (this network's space-to-depth and levels)")
    if not (math.isfinite(args.lr) and args.lr > 0):
        fail("--lr must be a positive number")
    if not (math.isfinite(args.noise_sigma) and args.noise_sigma >= 0):
        fail("--noise-sigma must be a number >= 0")
    parse_loss(args.loss)
    if args.qat_steps is None:
        args.qat_steps = args.steps // 5 if PRECISION == "int8" else 0
    if args.qat_steps < 0:
        fail("--qat-steps must be an integer >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    onnx_size = parse_size(args.onnx_size)
    torch.manual_seed(args.seed)
    train_files, val_files = split_files(args.data, args.val_data)
    train, val = TrainSet(train_files, args.patch), val_pairs(val_files, args.noise_sigma)
    print(f"train.py: {len(train_files)} training and {len(val_files)} validation images, device {device}")

    model = build_model()
    if args.resume is None and not args.scratch:
        if not args.weights.exists() and not args.weights.with_suffix(".pt").exists():
            fail(f"no initial weights at {args.weights}: pass --weights PATH or --scratch")
        load_weights(model, args.weights)
    # from the search's weights the wrapped net starts as exactly that net; --scratch adds the identities
    model = reparameterize(model, args.reparam, keep=not args.scratch).to(device)
    optimizer = torch.optim.Adam(param_groups(model, LR_FAN_IN), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    step, best_db = 0, -math.inf
    if args.resume is not None:
        path = Path(args.resume) if args.resume else args.out / "last.pt"
        if not path.is_file():
            fail(f"--resume: no checkpoint at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("arch_id") != ARCH_ID:
            fail(f"--resume: {path} is a checkpoint of another network (arch_id {state.get('arch_id')})")
        if state.get("reparam", "none") != args.reparam:
            fail(f"--resume: {path} was trained with --reparam {state.get('reparam', 'none')}, not {args.reparam}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
        step, best_db = int(state["step"]), float(state["best_psnr_db"])
        print(f"train.py: resumed from {path} at step {step}")
    args.out.mkdir(parents=True, exist_ok=True)

    loss_fn = make_loss(args.loss)
    warmup = args.warmup if args.warmup is not None else min(2000, max(WARMUP, args.steps // 100))
    warmup = min(warmup, args.steps // 2)
    stop = args.steps if args.stop_at is None else min(args.stop_at, args.steps)
    log_path = args.out / "log.csv"
    new_log = not log_path.exists()
    with open(log_path, "a", newline="") as log_file:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "loss", "lr", "val_psnr_db", "val_baseline_psnr_db"])
        model.train()
        t0, t0_step, running = time.perf_counter(), step, 0.0
        while step < stop:
            lr = lr_at(step, args.steps, args.lr, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            x, y = train.batch(args.batch_size, args.patch, args.noise_sigma, args.rotate, gen)
            loss = loss_fn(model(x.to(device)), y.to(device))
            value = float(loss.detach())
            if not math.isfinite(value):
                fail(f"the loss is {value} at step {step + 1}: lower --lr or --resume from a checkpoint")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            running += value
            row = [step, f"{value:.6g}", f"{lr:.6g}", "", ""]
            if step % args.val_every == 0 or step == args.steps:
                val_db, base_db = validate(model, val, device)
                if val_db > best_db:
                    best_db = val_db
                    save_weights(model, args.out / "best")
                row[3:] = [f"{val_db:.4f}", f"{base_db:.4f}"]
                print(f"train.py: step {step}: validation PSNR {val_db:.3f} dB "
                      f"({val_db - base_db:+.3f} dB over the baseline), best {best_db:.3f} dB")
            if step % args.log_every == 0 or step == args.steps:
                n = (step - 1) % args.log_every + 1
                rate = (step - t0_step) / max(1e-9, time.perf_counter() - t0)
                print(f"train.py: step {step}/{args.steps} loss {running / n:.5f} lr {lr:.2e} ({rate:.1f} steps/s)")
                running = 0.0
            log.writerow(row)
            if step % args.ckpt_every == 0 or step == stop:
                save_checkpoint(args.out / "last.pt", model, optimizer, step, gen, best_db, args.reparam)

    if step < args.steps:
        print(f"train.py: stopped at step {step} of {args.steps}: continue with --resume")
        return 0
    int8 = None
    if args.qat_steps:
        int8 = train_qat(model, train, args, device, gen)
        val_db, base_db = validate(int8, val, device)
        print(f"train.py: after QAT (fake-quantized): validation PSNR {val_db:.3f} dB "
              f"({val_db - base_db:+.3f} dB over the baseline)")
        model = build_model().to(device)  # the float net of the QAT weights, for the float graphs
        model.load_state_dict(int8.state_dict())
    weights = save_weights(model, args.out / "model")
    print(f"train.py: final weights in {weights}")
    if not args.no_onnx:
        try:
            export_onnx(model, args.out / "model.onnx", onnx_size, fp16=True)
            export_onnx(model, args.out / "model_fp32.onnx", onnx_size, fp16=False)
        except ImportError as exc:
            print(f"train.py: skipped the ONNX export ({exc}): pip install onnx", file=sys.stderr)
        else:
            print(f"train.py: ONNX graphs for 1x3x{onnx_size[0]}x{onnx_size[1]} in {args.out}: "
                  "model.onnx (fp16, for TensorRT) and model_fp32.onnx")
        if int8 is not None:
            export_int8(int8, args.out / "model_int8.onnx", onnx_size)
            print(f"train.py: the int8 QDQ graph in {args.out / 'model_int8.onnx'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
