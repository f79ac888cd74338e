"""MACs, parameters and bytes moved, computed from the spec alone (no torch).

The numbers feed the roofline lower bound, max(FLOPs / peak, bytes / bandwidth), and the report.
Bytes moved count each layer reading its input and weights and writing its output once: the
traffic of an unfused implementation, an upper bound on what a fusing backend moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.spec import ArchSpec, Conv


@dataclass(frozen=True)
class Counts:
    macs: int            # multiply-accumulates for one frame batch
    params: int          # trainable parameters (weights + biases)
    activation_bytes: int  # activation reads + writes, at ``bytes_per_element``
    weight_bytes: int    # each weight read once

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def bytes_moved(self) -> int:
        return self.activation_bytes + self.weight_bytes


class _Counter:
    def __init__(self, batch: int, bytes_per_element: int) -> None:
        self.batch, self.bpe = batch, bytes_per_element
        self.macs = self.params = self.act = 0

    def conv(self, cin: int, cout: int, k: int, h: int, w: int, stride: int = 1) -> tuple[int, int]:
        """Conv on an (N,cin,h,w) input; returns the output size (h', w')."""
        ho, wo = (h // stride, w // stride)
        self.macs += self.batch * ho * wo * cin * cout * k * k
        self.params += cout * cin * k * k + cout
        self.act += self.batch * (cin * h * w + cout * ho * wo) * self.bpe
        return ho, wo

    def move(self, elements_in: int, elements_out: int) -> None:
        """An elementwise or reshuffling op: read its inputs, write its output."""
        self.act += self.batch * (elements_in + elements_out) * self.bpe

    def stage(self, cin: int, layers: tuple[Conv, ...], skip: str, h: int, w: int) -> int:
        for layer in layers:
            self.conv(cin, layer.width, layer.kernel, h, w)
            if skip == "add" and cin == layer.width:
                self.move(2 * cin * h * w, cin * h * w)
            cin = layer.width
        return cin


def count(spec: ArchSpec, height: int, width: int, batch: int = 1, bytes_per_element: int = 2) -> Counts:
    """Counts for an input of (batch, 3, height, width); fp16 activations by default."""
    c, f, s = spec.in_channels, spec.space_to_depth, spec.scale
    k = _Counter(batch, bytes_per_element)
    H, W = height, width
    if spec.upsample != "identity":
        k.move(3 * H * W, 3 * H * W * s * s)            # classical resize
    if spec.color == "luma":
        k.conv(3, 1, 1, H, W)
        k.params -= 4                                    # the luma weights are fixed, not trained
    k.move(c * H * W, c * H * W)                         # whitening subtract
    if f > 1:
        k.move(c * H * W, c * H * W)                     # pixel-unshuffle
    h, w = H // f, W // f
    cin = k.stage(c * f * f, spec.head, spec.skip, h, w)

    def level(i: int, cin: int, h: int, w: int) -> None:
        lv = spec.levels[i]
        h2, w2 = k.conv(cin, lv.width, 2, h, w, stride=2)
        inner = k.stage(lv.width, lv.body, spec.skip, h2, w2)
        if i + 1 < len(spec.levels):
            level(i + 1, inner, h2, w2)
        k.conv(inner, 4 * cin, lv.up_kernel, h2, w2)
        k.move(4 * cin * h2 * w2, cin * h * w)          # depth-to-space
        k.move(2 * cin * h * w, cin * h * w)            # add the skip

    if spec.levels:
        level(0, cin, h, w)
    cin = k.stage(cin, spec.tail, spec.skip, h, w)
    out_ch = c * (s * f) ** 2
    k.conv(cin, out_ch, spec.output_kernel, h, w)
    if s * f > 1:
        k.move(out_ch * h * w, out_ch * h * w)         # depth-to-space
    k.move(3 * H * W * s * s + c * H * W * s * s, 3 * H * W * s * s)  # base + residual
    weight_bytes = k.params * bytes_per_element
    return Counts(macs=k.macs, params=k.params, activation_bytes=k.act, weight_bytes=weight_bytes)
