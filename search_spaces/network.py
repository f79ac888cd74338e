"""The one network every spec builds into, and the few building blocks it may use.

Only convolutions (zero padding), ReLU, pixel (un)shuffle, add and a classical resize appear:
these map to fast kernels on every backend (TensorRT, cuDNN, ONNX Runtime) and fuse well
(conv+ReLU, conv+add). No normalization, no other activation, no pooling.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.spec import ArchSpec, Conv

# BT.601 luma weights; they sum to 1, so adding a luma residual d to R, G and B raises Y by d and
# leaves the chroma (B-Y, R-Y) untouched: chroma stays exactly the classical upsampling.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# The output conv's starting bias without a classical base: mid-gray, the whitening (x - 0.5) undone.
NO_BASE_BIAS = 0.5


class ClassicalUpsample(nn.Module):
    """The cheap classical result the network learns a residual over (Resize in ONNX)."""

    def __init__(self, scale: int, mode: str) -> None:
        super().__init__()
        self.scale = scale
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "identity":
            return x
        if self.mode == "none":  # no classical base (Bicubic++): what the untrained net draws, flat gray
            n, c, h, w = x.shape
            return x.new_full((n, c, h * self.scale, w * self.scale), NO_BASE_BIAS)
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=False)


class Luma(nn.Module):
    """RGB (N,3,H,W) -> luma (N,1,H,W) as a fixed 1x1 convolution (a buffer, never trained)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight)


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A zero-padded convolution with He (Kaiming) init, which keeps ReLU-only stacks alive."""
    layer = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=(kernel // 2) if stride == 1 else 0)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


class Stage(nn.Module):
    """A run of conv+ReLU layers; with ``skip='add'`` a layer whose width matches its input adds it."""

    def __init__(self, in_ch: int, layers: tuple[Conv, ...], skip: str) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        self.residual: list[bool] = []
        for layer in layers:
            self.convs.append(conv(in_ch, layer.width, layer.kernel))
            self.residual.append(skip == "add" and in_ch == layer.width)
            in_ch = layer.width
        self.relu = nn.ReLU()
        self.out_channels = in_ch

    def forward(self, h: torch.Tensor, keep_first: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The stage's output and, with ``keep_first``, its first layer's output (for the long skip)."""
        first = None
        for i, (layer, residual) in enumerate(zip(self.convs, self.residual)):
            y = self.relu(layer(h))
            h = h + y if residual else y
            if keep_first and i == 0:
                first = h
        return h, first


class Down(nn.Module):
    """Encoder-decoder level: (N,C,H,W) -> strided 2x2 conv -> (N,w,H/2,W/2) -> body -> inner levels
    -> conv to 4C -> depth-to-space -> (N,C,H,W) -> add skip -> ReLU."""

    def __init__(self, in_ch: int, levels: tuple, skip: str) -> None:
        super().__init__()
        level = levels[0]
        self.down = conv(in_ch, level.width, 2, stride=2)
        self.body = Stage(level.width, level.body, skip)
        self.inner = Down(self.body.out_channels, levels[1:], skip) if len(levels) > 1 else None
        self.up = conv(self.body.out_channels, 4 * in_ch, level.up_kernel)
        self.shuffle = nn.PixelShuffle(2)
        self.relu = nn.ReLU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y, _ = self.body(self.relu(self.down(h)))
        if self.inner is not None:
            y = self.inner(y)
        return self.relu(h + self.shuffle(self.up(y)))


class SearchedNet(nn.Module):
    """The network a spec describes; see ArchSpec's docstring for the data flow and shapes."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        c, f, s = spec.in_channels, spec.space_to_depth, spec.scale
        self.base = ClassicalUpsample(s, spec.upsample)
        self.luma = Luma() if spec.color == "luma" else None
        self.unshuffle = nn.PixelUnshuffle(f) if f > 1 else None
        self.head = Stage(c * f * f, spec.head, spec.skip)
        width = self.head.out_channels
        self.levels = Down(width, spec.levels, spec.skip) if spec.levels else None
        self.tail = Stage(width, spec.tail, spec.skip)
        width = self.tail.out_channels
        # Output conv: one value per output sub-pixel, c*(s*f)^2 channels, then depth-to-space.
        # Zero-initialized so the untrained net equals its classical baseline exactly; without a base
        # its bias starts at mid-gray 0.5, the whitening undone, and the untrained net is flat gray.
        self.out = nn.Conv2d(width, c * (s * f) ** 2, spec.output_kernel, padding=spec.output_kernel // 2)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, NO_BASE_BIAS if spec.upsample == "none" else 0.0)
        self.shuffle = nn.PixelShuffle(s * f) if s * f > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.luma(x) if self.luma is not None else x  # (N,c,H,W)
        h = z - 0.5                                       # whiten to [-0.5, 0.5]
        if self.unshuffle is not None:
            h = self.unshuffle(h)                         # (N,c*f*f,H/f,W/f)
        h, first = self.head(h, keep_first=self.spec.long_skip)
        if self.levels is not None:
            h = self.levels(h)
        h, _ = self.tail(h)
        if first is not None:
            h = h + first                                 # long feature skip (SESR, Bicubic++)
        r = self.out(h)                                   # (N,c*(s*f)^2,H/f,W/f)
        if self.shuffle is not None:
            r = self.shuffle(r)                           # (N,c,sH,sW)
        if self.spec.upsample == "none":
            return r                                      # no base: the net is the whole image
        return self.base(x) + r                           # luma residual broadcasts over RGB


ALLOWED_LEAF_MODULES = (nn.Conv2d, nn.ReLU, nn.PixelShuffle, nn.PixelUnshuffle, ClassicalUpsample, Luma)


STAGE_KEY = re.compile(r"(head|tail)\.convs\.(\d+)\.(\w+)")  # a stage conv's tensor in SearchedNet's state_dict


def restaged(spec: ArchSpec, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` under ``spec``'s module names when it was saved for the same convs split otherwise between
    head and tail: a spec without levels stored before issue #25 may hold some of its one run of layers in
    the tail, which the canonical spec holds in the head. The head's then the tail's convs, in forward order,
    take ``spec``'s names; any other state comes back as it is."""
    stage = {key: m for key in state if (m := STAGE_KEY.fullmatch(key))}
    saved = sorted({(m[1] == "tail", int(m[2])) for m in stage.values()})
    names = [("head", i) for i in range(len(spec.head))] + [("tail", i) for i in range(len(spec.tail))]
    if spec.levels or len(saved) != len(names):
        return state
    rename = {("tail" if tail else "head", i): name for (tail, i), name in zip(saved, names)}

    def key_of(key: str) -> str:
        m = stage.get(key)
        if m is None:
            return key
        name, i = rename[m[1], int(m[2])]
        return f"{name}.convs.{i}.{m[3]}"

    return {key_of(key): value for key, value in state.items()}


def build(spec: ArchSpec) -> SearchedNet:
    """Build the (untrained) PyTorch module for a spec, in eval mode."""
    return SearchedNet(spec).eval()
