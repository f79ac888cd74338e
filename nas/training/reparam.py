"""Re-parameterized training: each conv trains as a sum of linear branches that collapse into one conv.

``reparameterize(net, kind)`` swaps every ``nn.Conv2d`` of a plain net for a ``ReparamConv``; its
forward computes the collapsed (weight, bias) from the branch parameters and convolves once with
the original stride and padding (SESR's trick, Bhardwaj et al. 2022), so a step costs about what a
plain step costs while the gradients reach every branch. ``collapse(net)`` writes the collapsed
weights back as plain convs: the state_dict keys, model.py, the ONNX graphs and the latency are
those of the plain net. Kinds:

- ``linear`` (SESR's linear block): main k x k conv + (k x k conv to ``4 * C_out`` channels, at most
  256, then a 1 x 1 back, nothing between) + identity.
- ``ecb`` (ECBSR's edge-oriented block, Zhang et al. 2021): main k x k conv + (1 x 1 to ``2 * C_out``
  then k x k) + (1 x 1, then a per-channel scaled Sobel-x, Sobel-y and Laplacian, for k >= 3) + identity.

The identity branch is used where the stride is 1, C_in == C_out and the conv is not the output conv
(``no_identity``: zero-initialized, so the untrained net stays its classical base). A strided 2 x 2
conv (no padding) and a 1 x 1 conv keep every branch that fits their kernel: the expansion (linear)
or the 1 x 1 -> k x k branch (ecb); the 3 x 3 edge filters need k >= 3. At construction the collapsed
conv equals the plain conv it replaces (the main branch holds its weights, every other branch's
last factor starts at zero). From a fresh initialization (``keep=False``) the identity comes on top of
the main branch's He init, so each such conv starts as ``W + I`` (SESR's start, the point of the
identity); from trained weights (``keep=True``) the main branch holds ``W - I`` and the collapsed conv
is exactly the plain one.

Needs only PyTorch: ``nas export`` ships this file beside train.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("none", "linear", "ecb")
LINEAR_EXPANSION, MAX_EXPANDED = 4, 256  # linear: k x k to min(4 * C_out, 256) channels, then 1 x 1
ECB_DEPTH_MULTIPLIER = 2                 # ecb: 1 x 1 to 2 * C_out channels, then k x k (as ECBSR)
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


class ReparamConv(nn.Module):
    """A conv trained as a sum of linear branches; forward convolves once with the collapsed kernel."""

    def __init__(self, conv: nn.Conv2d, kind: str, identity: bool, keep: bool) -> None:
        super().__init__()
        if kind not in KINDS[1:]:
            raise ValueError(f"unknown re-parameterization {kind!r}: use one of {', '.join(KINDS)}")
        cout, cin, k, _ = conv.weight.shape
        self.kind, self.stride, self.padding = kind, conv.stride, conv.padding
        self.in_channels, self.out_channels, self.kernel = cin, cout, k
        self.identity = identity and conv.stride == (1, 1) and cin == cout and k % 2 == 1
        w = conv.weight.detach().clone()
        if self.identity and keep:
            w = w - self._eye(w)
        self.main_weight = nn.Parameter(w)
        self.main_bias = nn.Parameter(conv.bias.detach().clone())
        like = {"device": w.device, "dtype": w.dtype}
        if kind == "linear":
            m = min(MAX_EXPANDED, LINEAR_EXPANSION * cout)
            self.expand_weight = nn.Parameter(torch.randn(m, cin, k, k, **like) / m**0.5)
            self.expand_bias = nn.Parameter(torch.zeros(m, **like))
            self.project_weight = nn.Parameter(torch.zeros(cout, m, **like))  # 1 x 1 back, zero: no change at start
        else:
            m = ECB_DEPTH_MULTIPLIER * cout
            self.reduce_weight = nn.Parameter(torch.randn(m, cin, **like) / m**0.5)  # the 1 x 1
            self.reduce_bias = nn.Parameter(torch.zeros(m, **like))
            self.spread_weight = nn.Parameter(torch.zeros(cout, m, k, k, **like))  # the k x k after it
            if k >= 3:
                masks = torch.tensor((SOBEL_X, SOBEL_Y, LAPLACIAN), **like)
                self.register_buffer("edge_masks", masks, persistent=False)
                self.edge_weight = nn.Parameter(torch.randn(3, cout, cin, **like) / cin**0.5)
                self.edge_scale = nn.Parameter(torch.zeros(3, cout, **like))
        self.fan_in = cin * k * k  # of the collapsed conv: nas.training.train.param_groups scales every branch by it

    def _eye(self, like: torch.Tensor) -> torch.Tensor:
        """The identity as a (C, C, k, k) kernel: 1 at the centre tap of channel o -> o."""
        eye = torch.zeros_like(like)
        c = self.kernel // 2
        eye[:, :, c, c] = torch.eye(self.out_channels, dtype=like.dtype, device=like.device)
        return eye

    def collapsed(self, with_identity: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The one (weight, bias) the branches sum to, differentiable in every branch parameter (without the
        identity branch's kernel when ``with_identity`` is False: ``forward`` then adds its input instead)."""
        w, b = self.main_weight, self.main_bias
        if self.identity and with_identity:
            w = w + self._eye(w)
        if self.kind == "linear":
            w = w + torch.einsum("om,mikl->oikl", self.project_weight, self.expand_weight)
            b = b + self.project_weight @ self.expand_bias
        else:
            w = w + torch.einsum("omkl,mi->oikl", self.spread_weight, self.reduce_weight)
            b = b + torch.einsum("omkl,m->o", self.spread_weight, self.reduce_bias)
            if self.kernel >= 3:
                # zero-sum masks: a bias before them would add nothing, so the 1 x 1 has none
                edge = torch.einsum("eo,eoi,ekl->oikl", self.edge_scale, self.edge_weight, self.edge_masks)
                p = (self.kernel - 3) // 2
                w = w + F.pad(edge, (p, p, p, p))
        return w, b

    @property
    def weight(self) -> torch.Tensor:
        """The collapsed kernel, as a plain conv's ``weight`` (what a check of the conv reads)."""
        return self.collapsed()[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under autocast the kernel is rounded to bf16 (8 significant bits): an identity's centre tap near 1 then
        # moves in steps of 2^-7, coarser than the learned update it carries, so the identity is added to the
        # output instead (the same sum; reports/training_speed.md, "Session 10"). fp32 convolves once, as cached.
        split = self.identity and torch.is_autocast_enabled(x.device.type)
        weight, bias = self.collapsed(with_identity=not split)
        y = F.conv2d(x, weight, bias, self.stride, self.padding)
        return y + x if split else y

    def forward_expanded(self, x: torch.Tensor) -> torch.Tensor:
        """Every branch run on its own and summed (the definition; 4-16x the cost of ``forward``).

        As ECBSR does, a 1 x 1 conv's output is padded with its bias before the k x k conv after it,
        which is what one conv on the zero-padded input computes."""
        y = F.conv2d(x, self.main_weight, self.main_bias, self.stride, self.padding)
        if self.identity:
            y = y + x
        if self.kind == "linear":
            t = F.conv2d(x, self.expand_weight, self.expand_bias, self.stride, self.padding)
            return y + F.conv2d(t, self.project_weight[:, :, None, None])
        t = F.conv2d(x, self.reduce_weight[:, :, None, None], self.reduce_bias)
        ph, pw = self.padding
        t = F.pad(t - self.reduce_bias[:, None, None], (pw, pw, ph, ph)) + self.reduce_bias[:, None, None]
        y = y + F.conv2d(t, self.spread_weight, None, self.stride)
        if self.kernel >= 3:
            for e in range(3):
                t = F.conv2d(x, self.edge_weight[e][:, :, None, None])  # no bias: padding with zeros is exact
                mask = (self.edge_scale[e][:, None, None] * self.edge_masks[e])[:, None]
                y = y + F.conv2d(t, mask, None, 1, 1, 1, self.out_channels)
        return y

    def to_conv(self) -> nn.Conv2d:
        """A plain conv holding the collapsed weights (same stride and padding)."""
        weight, bias = self.collapsed()
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel, stride=self.stride,
                         padding=self.padding).to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        return conv


def _replace(net: nn.Module, swap: type, make: Callable[[str, nn.Module], nn.Module]) -> nn.Module:
    """Replace every submodule of type ``swap`` by ``make(name, module)``, in place."""
    for name, module in list(net.named_modules()):
        if isinstance(module, swap):
            parent_name, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, child, make(name, module))
    return net


def reparameterize(net: nn.Module, kind: str, keep: bool, no_identity: tuple[str, ...] = ("out",)) -> nn.Module:
    """Swap every nn.Conv2d of ``net`` for a ReparamConv of ``kind`` (``none``: ``net`` unchanged), in place.

    ``keep``: the net holds trained weights and its output must not change (otherwise the identity
    branches are added to its fresh initialization). Draws the branches' random initialization from
    torch's global RNG."""
    if kind not in KINDS:
        raise ValueError(f"unknown re-parameterization {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "none":
        return net
    return _replace(net, nn.Conv2d, lambda name, conv: ReparamConv(conv, kind, name not in no_identity, keep))


def collapse(net: nn.Module) -> nn.Module:
    """Write every ReparamConv of ``net`` back as a plain conv with its collapsed weights, in place."""
    return _replace(net, ReparamConv, lambda _name, module: module.to_conv().train(module.training))


def fan_ins(net: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """Each parameter of ``net`` with the fan-in of the conv whose kernel it shapes (0: a bias, a scale).

    A ReparamConv's branch weights all get the collapsed conv's fan-in, so a fan-in learning-rate rule
    treats them as it treats the plain conv's weight."""
    pairs: list[tuple[nn.Parameter, int]] = []
    for module in net.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, ReparamConv):
                pairs.append((param, module.fan_in if name.endswith("weight") else 0))
            else:
                pairs.append((param, param[0].numel() if param.dim() == 4 else 0))
    return pairs
