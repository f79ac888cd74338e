"""Small networks of our own, exported with torch.onnx, to serve as users' ``--baseline`` graphs in the tests."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn


class PReLUTranspose(nn.Module):
    """FSRCNN-like, RGB: 5x5 conv, PReLU shrink/map/expand (one slope shared by two layers), 9x9 transposed conv."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.PReLU(16), nn.Conv2d(16, 8, 1), nn.PReLU(8),
                                  nn.Conv2d(8, 16, 1), nn.PReLU(16))
        self.up = nn.ConvTranspose2d(16, 3, 9, stride=scale, padding=4, output_padding=scale - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.body(x))


class LumaShuffle(nn.Module):
    """ESPCN-like, luma in and out: convs, LeakyReLU, depth-to-space, over a bicubic base."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.LeakyReLU(0.1), nn.Conv2d(16, 4, 3, padding=1),
                                  nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


class Erfy(nn.Module):
    """RGB x2 with an operator the converter lacks (Erf, through GELU): ONNX Runtime runs it, PyTorch cannot take it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pixel_shuffle(nn.functional.gelu(self.conv(x)), 2)


def onnx_bytes(net: nn.Module, channels: int, *, fp16: bool = False, dynamic: bool = True, side: int = 32) -> bytes:
    """``net`` (seeded weights) as ONNX, exported at side x side, with dynamic height and width unless told not."""
    net = net.eval()
    x = torch.rand(1, channels, side, side)
    if fp16:
        net, x = net.half(), x.half()
    buf = io.BytesIO()
    axes = {"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes=axes)
    return buf.getvalue()


def write_nets(folder: Path) -> dict[str, Path]:
    """The test graphs as files: rgb (PReLU + ConvTranspose), luma, rgb16 (fp16), erf (does not convert)."""
    torch.manual_seed(0)
    nets = {"rgb": onnx_bytes(PReLUTranspose(), 3), "luma": onnx_bytes(LumaShuffle(), 1),
            "rgb16": onnx_bytes(PReLUTranspose(), 3, fp16=True), "erf": onnx_bytes(Erfy(), 3)}
    out = {}
    for name, data in nets.items():
        out[name] = folder / f"{name}.onnx"
        out[name].write_bytes(data)
    return out
