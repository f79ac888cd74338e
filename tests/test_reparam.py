"""Re-parameterization: the collapsed conv is exactly the sum of its branches, for every layer the spaces hold."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from torch import nn

import search_spaces as ss
from nas.training.reparam import KINDS, ReparamConv, collapse, fan_ins, reparameterize

KINDS_ON = KINDS[1:]
SMALL = (32, 48)  # divisible by 8: every space-to-depth and level combination tiles it
N_RANDOM = 4
# fp64 keeps fp32 rounding (1e-6 relative over a deep net's sums) out of a test of the algebra
REL_TOL = 1e-5


def specs() -> list[tuple[str, ss.ArchSpec]]:
    """Every space's references (classic and modern), random samples, and specs holding every kernel,
    skip and level kind."""
    out = []
    for name in ss.list_spaces():
        space = ss.get_space(name)
        refs = space.references() | space.modern_references()
        out += [(f"{name}-{ref}", spec) for ref, spec in refs.items()]
        out += [(f"{name}-random{seed}", space.random_spec(random.Random(seed), SMALL)) for seed in range(N_RANDOM)]
    for skip in ss.spec.SKIPS:
        for out_k in ss.spec.KERNELS:
            out.append((f"denoise-all-{skip}-out{out_k}", ss.ArchSpec(
                space="denoise", scale=1, upsample="identity", color="luma", space_to_depth=2,
                head=(ss.Conv(16, 1), ss.Conv(16, 3), ss.Conv(16, 5)),
                levels=(ss.Level(24, (ss.Conv(24, 3), ss.Conv(32, 5)), 3), ss.Level(32, (ss.Conv(32, 1),), 1)),
                tail=(ss.Conv(16, 3), ss.Conv(8, 5)), skip=skip, output_kernel=out_k)))
    return out


SPECS = specs()


def randomize(net: nn.Module, seed: int) -> None:
    """Every parameter random and nonzero (the branches that start at zero included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=param.dtype) * 0.2)


def run_expanded(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The net's output with every ReparamConv running its branches one by one."""
    reparam = [m for m in net.modules() if isinstance(m, ReparamConv)]
    for m in reparam:
        m.forward = m.forward_expanded  # type: ignore[method-assign]
    try:
        return net(x)
    finally:
        for m in reparam:
            del m.forward


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max().detach() / b.abs().max().detach())


@pytest.mark.parametrize("kind", KINDS_ON)
@pytest.mark.parametrize(("cin", "cout", "kernel", "stride"),
                         [(16, 16, 1, 1), (16, 24, 1, 1), (16, 16, 3, 1), (8, 16, 3, 1), (16, 16, 5, 1),
                          (24, 8, 5, 1), (16, 16, 2, 2), (16, 32, 2, 2)])
def test_one_conv_collapses_exactly(kind: str, cin: int, cout: int, kernel: int, stride: int) -> None:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0).double()
    layer = ReparamConv(conv, kind, identity=True, keep=False)
    assert layer.identity == (stride == 1 and cin == cout)
    randomize(layer, 1)
    x = torch.randn(2, cin, 12, 10, dtype=torch.float64)
    expanded = layer.forward_expanded(x)
    assert expanded.shape == conv(x).shape
    assert rel_err(layer(x), expanded) < REL_TOL
    assert rel_err(layer.to_conv()(x), expanded) < REL_TOL


@pytest.mark.parametrize("kind", KINDS_ON)
@pytest.mark.parametrize(("label", "spec"), SPECS, ids=[label for label, _ in SPECS])
def test_net_collapses_exactly(kind: str, label: str, spec: ss.ArchSpec) -> None:
    net = reparameterize(ss.build(spec).double(), kind, keep=False)
    randomize(net, 2)
    x = torch.rand(2, 3, *SMALL, dtype=torch.float64)
    with torch.no_grad():
        expanded = run_expanded(net, x)
        assert rel_err(net(x), expanded) < REL_TOL
        plain = collapse(copy.deepcopy(net))
        assert rel_err(plain(x), expanded) < REL_TOL
    assert set(plain.state_dict()) == set(ss.build(spec).state_dict())
    assert [type(m) for m in plain.modules()] == [type(m) for m in ss.build(spec).modules()]


@pytest.mark.parametrize("kind", KINDS_ON)
def test_starts_as_the_plain_net_and_every_branch_learns(kind: str) -> None:
    spec = SPECS[-1][1]
    torch.manual_seed(0)
    plain = ss.build(spec)
    randomize(plain.out, 3)  # the output conv starts at zero: give the features a path to the loss
    net = reparameterize(copy.deepcopy(plain), kind, keep=True)
    x = torch.rand(2, 3, *SMALL)
    assert torch.allclose(net(x), plain(x), rtol=0, atol=1e-5)  # fp32: only rounding differs
    fresh = reparameterize(copy.deepcopy(plain), kind, keep=False)
    for name, conv in plain.named_modules():
        if isinstance(conv, nn.Conv2d):
            layer = fresh.get_submodule(name)
            eye = layer._eye(conv.weight) if layer.identity else 0  # fresh: the identity on top of the init
            assert torch.allclose(layer.weight, conv.weight + eye, rtol=0, atol=1e-6), name
    randomize(net, 4)
    net(x).square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and param.grad.abs().max() > 0, name


def test_identity_only_where_it_fits() -> None:
    spec = SPECS[-1][1]
    net = reparameterize(ss.build(spec), "linear", keep=False)
    convs = {name: m for name, m in net.named_modules() if isinstance(m, ReparamConv)}
    assert not convs["out"].identity                      # zero-init output conv: the net starts as its base
    assert not convs["levels.down"].identity               # strided
    assert convs["head.convs.1"].identity                  # 3x3, 16 -> 16
    assert not convs["levels.body.convs.1"].identity       # 24 -> 32
    assert "edge_weight" not in dict(reparameterize(ss.build(spec), "ecb", keep=False).levels.down.named_parameters())


def test_branch_weights_take_the_collapsed_fan_in() -> None:
    net = reparameterize(ss.build(SPECS[-1][1]), "linear", keep=False)
    by_param = {id(p): f for p, f in fan_ins(net)}
    layer = net.head.convs[2]                               # 5x5 from 16 channels
    assert by_param[id(layer.project_weight)] == by_param[id(layer.expand_weight)] == 16 * 25
    assert by_param[id(layer.main_bias)] == 0
    assert len(by_param) == len(list(net.parameters()))


def test_none_and_unknown_kinds() -> None:
    net = ss.build(SPECS[0][1])
    assert reparameterize(net, "none", keep=False) is net and not any(isinstance(m, ReparamConv) for m in net.modules())
    with pytest.raises(ValueError, match="unknown re-parameterization 'acb'"):
        reparameterize(net, "acb", keep=False)


@pytest.mark.parametrize("kind", KINDS_ON)
def test_under_bf16_autocast_the_identity_is_added_not_rounded_into_the_kernel(kind: str) -> None:
    """A centre tap of 1 + 1e-3 rounds to 1 in bf16 (steps of 2^-7 there): folded into the kernel, the identity would
    erase the learned update it carries. Under autocast the conv adds its input instead, so the update survives; in
    fp32 one conv computes the same sum."""
    conv = nn.Conv2d(8, 8, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[:, :, 1, 1] = 1e-3 * torch.eye(8)
    layer = ReparamConv(conv, kind, identity=True, keep=False)  # main = 1e-3 I, plus the identity: (1 + 1e-3) I
    x = (torch.rand(1, 8, 6, 6) + 0.5).bfloat16().float()  # what a bf16 layer before it hands on
    with torch.no_grad():
        assert torch.allclose(layer(x), 1.001 * x, rtol=1e-6, atol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x).float()
    assert torch.allclose(y, 1.001 * x, rtol=2e-3, atol=0)           # bf16's own rounding of the sum: 2^-8
    assert (y / x).mean().item() == pytest.approx(1.001, abs=2e-4)     # folded: exactly 1.000 (the update lost)
