"""Contract tests run over every registered search space (timm-style: parametrized over the registry)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

import search_spaces as ss
from search_spaces.network import ALLOWED_LEAF_MODULES

SPACES = ss.list_spaces()
N_RANDOM = 20
SMALL = (32, 48)  # divisible by 8: every space-to-depth and level combination tiles it


def random_specs(name: str) -> list[ss.ArchSpec]:
    space = ss.get_space(name)
    return [space.random_spec(random.Random(seed), SMALL) for seed in range(N_RANDOM)]


def test_registry_lists_the_tasks() -> None:
    assert {"sr2x", "sr3x", "sr4x", "denoise"} <= set(SPACES)
    assert ss.list_spaces("sr*") == ["sr2x", "sr3x", "sr4x"]
    with pytest.raises(ss.UnknownSpaceError, match="choose one of"):
        ss.get_space("sr5x")


def test_enhance_is_the_denoise_topology_trained_on_pairs() -> None:
    enhance, denoise = ss.get_space("enhance"), ss.get_space("denoise")
    assert (enhance.kind, enhance.scale, enhance.data_kind, denoise.data_kind) == ("denoise", 1, "enhance", "denoise")
    assert enhance.random_spec(3, SMALL) == denoise.random_spec(3, SMALL)   # same nets: latencies are shared
    assert enhance.references() == denoise.references()


@pytest.mark.parametrize("name", SPACES)
def test_random_specs_build_and_run(name: str) -> None:
    for spec in random_specs(name):
        net = ss.build(spec)
        x = torch.rand(2, 3, *SMALL)
        with torch.no_grad():
            y = net(x)
        assert y.shape == (2, 3, SMALL[0] * spec.scale, SMALL[1] * spec.scale)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", SPACES)
def test_only_allowed_modules_and_widths(name: str) -> None:
    for spec in random_specs(name) + list(ss.get_space(name).references().values()):
        net = ss.build(spec)
        containers = (nn.ModuleList, nn.Sequential)
        leaves = [m for m in net.modules() if not list(m.children()) and not isinstance(m, containers)]
        for module in leaves:
            assert isinstance(module, ALLOWED_LEAF_MODULES), f"{type(module).__name__} in {spec.summary()}"
            if isinstance(module, nn.Conv2d):
                assert module.padding_mode == "zeros"
        # Every conv but the output one (c*(s*f)^2 channels, fixed by the task) writes a multiple
        # of 8 channels; decoder convs write 4x a feature width.
        for layer in net.modules():
            if isinstance(layer, nn.Conv2d) and layer is not net.out:
                assert layer.out_channels % 8 == 0, (layer, spec.summary())


@pytest.mark.parametrize("name", SPACES)
def test_feature_widths_are_multiples_of_8(name: str) -> None:
    for spec in random_specs(name):
        widths = [c.width for c in spec.head + spec.tail]
        for level in spec.levels:
            widths += [level.width] + [c.width for c in level.body]
        assert widths and all(w % 8 == 0 for w in widths)


@pytest.mark.parametrize("name", SPACES)
def test_untrained_net_equals_classical_baseline_exactly(name: str) -> None:
    for spec in random_specs(name)[:10]:
        net = ss.build(spec)
        x = torch.rand(1, 3, *SMALL)
        with torch.no_grad():
            assert torch.equal(net(x), net.base(x))


@pytest.mark.parametrize("name", SPACES)
def test_seeded_random_spec_is_deterministic(name: str) -> None:
    space = ss.get_space(name)
    a = [space.random_spec(seed, SMALL).arch_id for seed in range(10)]
    b = [space.random_spec(seed, SMALL).arch_id for seed in range(10)]
    assert a == b
    assert len(set(a)) > 5  # the seeds explore, not repeat


@pytest.mark.parametrize("name", SPACES)
def test_input_size_restricts_what_cannot_tile(name: str) -> None:
    space = ss.get_space(name)
    for seed in range(30):
        spec = space.random_spec(seed, (135, 240))  # 135 is odd: no space-to-depth, no level
        assert spec.size_multiple == 1
        space.check(spec, (135, 240))


@pytest.mark.parametrize("name", SPACES)
def test_references_belong_to_their_space(name: str) -> None:
    space = ss.get_space(name)
    for spec in space.references().values():
        space.check(spec)
        assert ss.ArchSpec.from_json(spec.to_json()) == spec


def test_sr_references_are_the_documented_designs() -> None:
    refs = ss.get_space("sr2x").references()
    assert set(refs) == {"espcn", "fsrcnn", "fsrcnn_small", "tiny"}
    assert [(c.kernel, c.width) for c in refs["espcn"].head] == [(5, 64), (3, 32)]
    assert len(refs["tiny"].head) == 1  # plus the output conv: two layers


@pytest.mark.parametrize("name", SPACES)
def test_modern_references_belong_to_their_space_and_replay(name: str) -> None:
    from search_spaces.base import FixedChooser

    space = ss.get_space(name)
    modern = space.modern_references()
    assert modern and not set(modern) & set(space.references())
    for spec in modern.values():
        space.check(spec, SMALL)
        assert space.draw(FixedChooser(space.params_of(spec)), SMALL) == spec  # the search can reach it


@pytest.mark.parametrize("name", SPACES)
def test_fitting_references_are_classic_then_modern_and_say_why_one_is_left_out(name: str) -> None:
    space = ss.get_space(name)
    every = [*space.references(), *space.modern_references()]
    nets, left_out = space.fitting_references(SMALL)
    assert list(nets) == every and not left_out
    odd = (35, 48)  # odd height: nothing with space-to-depth or a level tiles it
    nets, left_out = space.fitting_references(odd)
    assert set(nets) | set(left_out) == set(every) and not set(nets) & set(left_out)
    assert [n for n in every if n in nets] == list(nets)
    for ref, reason in left_out.items():
        assert (space.references() | space.modern_references())[ref].size_multiple > 1
        assert "35x48 is not a multiple of" in reason
    if name == "sr2x":
        assert set(left_out) == {"bicubic_pp"}


def test_modern_sr_references_are_the_documented_designs() -> None:
    refs = ss.get_space("sr3x").modern_references()
    assert set(refs) == {"ecbsr_m4c8", "ecbsr_m4c16", "abpn", "quicksrnet_s", "quicksrnet_m", "sesr_m5", "sesr_m11",
                         "bicubic_pp"}
    assert [(c.kernel, c.width) for c in refs["ecbsr_m4c16"].head] == [(3, 16)] * 5
    assert refs["ecbsr_m4c8"].color == "luma" and refs["ecbsr_m4c8"].in_channels == 1
    assert len(refs["quicksrnet_s"].head) == 3 and len(refs["quicksrnet_m"].head) == 6
    for name, m in (("sesr_m5", 5), ("sesr_m11", 11)):
        sesr = refs[name]
        assert [(c.kernel, c.width) for c in sesr.head] == [(5, 16)] + [(3, 16)] * m
        assert (sesr.color, sesr.long_skip, sesr.output_kernel, sesr.skip) == ("luma", True, 5, "none")
    bpp = refs["bicubic_pp"]
    assert (bpp.upsample, bpp.color, bpp.space_to_depth, bpp.long_skip) == ("none", "rgb", 2, True)
    assert [(c.kernel, c.width) for c in bpp.head] == [(3, 32)] * 3
    assert ss.build(bpp).out.out_channels == 3 * (2 * 3) ** 2  # 3(2s)^2 then depth-to-space 2s, as published
    assert all(spec.upsample == "nearest" and spec.scale == 3 for n, spec in refs.items() if n != "bicubic_pp")


def test_long_skip_adds_the_first_layer_and_no_base_draws_the_whole_image() -> None:
    """SearchedNet against the data flow written out by hand for Bicubic++ (long skip, no base, space-to-depth)
    and SESR-M5 (long skip over a nearest base, luma)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    for name in ("bicubic_pp", "sesr_m5"):
        spec = ss.get_space("sr2x").modern_references()[name]
        net = ss.build(spec)
        for p in net.parameters():
            p.data.normal_(0, 0.1)
        x = torch.rand(2, 3, 16, 24)
        z = net.luma(x) if net.luma is not None else x
        h = z - 0.5
        if spec.space_to_depth > 1:
            h = F.pixel_unshuffle(h, spec.space_to_depth)
        first = h = F.relu(net.head.convs[0](h))
        for layer in net.head.convs[1:]:
            h = F.relu(layer(h))
        r = F.pixel_shuffle(net.out(h + first), spec.scale * spec.space_to_depth)
        by_hand = r if spec.upsample == "none" else F.interpolate(x, scale_factor=2, mode="nearest") + r
        with torch.no_grad():
            torch.testing.assert_close(net(x), by_hand, rtol=0, atol=1e-6)


def test_the_space_offers_the_long_skip_and_no_base() -> None:
    space = ss.get_space("sr2x")
    drawn = [space.random_spec(seed, SMALL) for seed in range(300)]
    assert any(s.long_skip for s in drawn) and any(s.upsample == "none" for s in drawn)
    assert all(s.color == "rgb" for s in drawn if s.upsample == "none")
    assert max(len(s.head) for s in drawn) > 7 and space.version == 2


def test_optuna_trial_sampling_is_define_by_run_and_seeded() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def ids(seed: int) -> list[str]:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        out = []
        space = ss.get_space("sr2x")
        for _ in range(8):
            trial = study.ask()
            spec = space.sample(trial, (64, 96))
            out.append(spec.arch_id)
            study.tell(trial, float(len(spec.head)))
        return out

    assert ids(3) == ids(3)
    assert ids(3) != ids(4)


def test_espcn_mac_count_matches_hand_computation() -> None:
    spec = ss.get_space("sr2x").references()["espcn"]
    h, w = 135, 240
    # conv 5x5 3->64, conv 3x3 64->32, output conv 3x3 32->12 (3 * 2^2), all at 135x240.
    hand = h * w * (5 * 5 * 3 * 64 + 3 * 3 * 64 * 32 + 3 * 3 * 32 * 12)
    params = (5 * 5 * 3 * 64 + 64) + (3 * 3 * 64 * 32 + 32) + (3 * 3 * 32 * 12 + 12)
    counts = ss.count(spec, h, w)
    assert counts.macs == hand == 864_691_200
    assert counts.params == params == sum(p.numel() for p in ss.build(spec).parameters())


@pytest.mark.parametrize("name", SPACES)
def test_param_count_matches_torch(name: str) -> None:
    for spec in random_specs(name):
        counts = ss.count(spec, *SMALL)
        assert counts.params == sum(p.numel() for p in ss.build(spec).parameters()), spec.summary()
        assert counts.macs > 0 and counts.bytes_moved > 0


@pytest.mark.parametrize("name", SPACES)
def test_params_of_replays_to_the_same_spec(name: str) -> None:
    from search_spaces.base import FixedChooser

    space = ss.get_space(name)
    for spec in random_specs(name) + list(space.references().values()):
        params = space.params_of(spec)
        assert space.draw(FixedChooser(params), SMALL) == spec


def test_enqueued_reference_is_sampled_exactly_by_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = ss.get_space("sr2x")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    refs = space.references()
    for spec in refs.values():
        study.enqueue_trial(space.params_of(spec))
    drawn = [space.sample(study.ask(), (135, 240)) for _ in refs]
    assert drawn == list(refs.values())


@pytest.mark.parametrize("name", SPACES)
def test_the_plan_is_the_network_the_builder_makes(name: str) -> None:
    """Every conv of the plan is a conv of build(spec), in forward order, under its state_dict key, with its
    shapes; the plan's MACs equal those of the convs as they run (forward hooks on a real input)."""
    from search_spaces.plan import convs

    h, w = SMALL
    for spec in [*ss.get_space(name).references().values(), *random_specs(name)]:
        if h % spec.size_multiple or w % spec.size_multiple:
            continue
        net = ss.build(spec)
        ran: list[tuple[str, int]] = []
        modules = {mod: key for key, mod in net.named_modules()}

        def hook(mod: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor,
                 ran: list[tuple[str, int]] = ran, modules: dict[nn.Module, str] = modules) -> None:
            k = mod.kernel_size[0] * mod.kernel_size[1]
            ran.append((modules[mod], out.shape[2] * out.shape[3] * mod.in_channels * mod.out_channels * k))

        handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            net(torch.rand(1, 3, h, w))
        for handle in handles:
            handle.remove()
        planned = convs(spec, h, w)
        assert [(op.source, op.macs) for op in planned] == ran, spec.summary()
        for op in planned:
            conv = net.get_submodule(op.source)
            assert (conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0]) == \
                (op.cin, op.cout, op.kernel, op.stride), (op.source, spec.summary())


def test_nas_spaces_lists_classic_and_modern_references() -> None:
    from tiny import run_nas

    proc = run_nas("spaces", "sr2x", "--json")
    assert proc.returncode == 0, proc.stderr
    refs = json.loads(proc.stdout)["sr2x"]["references"]
    space = ss.get_space("sr2x")
    assert list(refs) == [*space.references(), *space.modern_references()]
    assert {n for n, r in refs.items() if r["modern"]} == set(space.modern_references())
    assert refs["bicubic_pp"]["arch_id"] == space.modern_references()["bicubic_pp"].arch_id
