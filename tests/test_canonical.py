"""One id per network (issue #25): a choice that changes nothing is normalized when a spec is made, so two
specs of one network have one arch_id; specs canonical as stated keep the ids they always had, and a run dir
or study that keyed a non-canonical spec by its old id still reads, mapped to the canonical id."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from collections import defaultdict
from functools import partial
from pathlib import Path

import optuna
import pytest
import torch

import search_spaces as ss
from nas.rundir import RunDir, RunDirWriter
from nas.search.driver import latency_gate
from nas.search.samplers import EvolutionSampler
from nas.target import Budget
from search_spaces import ArchSpec, Conv, Level, SpecError
from search_spaces.base import FixedChooser
from search_spaces.network import restaged
from search_spaces.plan import identity, plan

optuna.logging.set_verbosity(optuna.logging.WARNING)
SIZES = {"sr": ((135, 240), (136, 240)), "denoise": ((135, 240), (136, 240), (540, 960))}
N_DRAWS = 2000
# Digests of ids computed by the code before normalization (commit f478841): every reference net, and 150
# seeded draws per space at 135x240 and at 136x240 (see ids_digest).
REFERENCE_IDS_BEFORE = "d6df233a742b5fb2831d1bbce42d9fc8af0e913d2e17c163691f77870fb46d79"
DRAW_IDS_BEFORE = "df3a85608f5291d94d010a5eda227b9e095f57f911b8ab0b75ce80ea6f5720fe"


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def rgb_sr(*layers: tuple[int, int], skip: str = "none") -> ArchSpec:
    return ArchSpec(space="sr", scale=2, upsample="bilinear", color="rgb", space_to_depth=1,
                    head=tuple(Conv(w, k) for w, k in layers), skip=skip)


def denoise(head: tuple[Conv, ...], tail: tuple[Conv, ...] = (), levels: tuple[Level, ...] = (),
            skip: str = "none") -> ArchSpec:
    return ArchSpec(space="denoise", scale=1, upsample="identity", color="rgb", space_to_depth=1,
                    head=head, levels=levels, tail=tail, skip=skip)


def as_drawn(spec: ArchSpec, params: dict[str, object]) -> ArchSpec:
    """The spec as the space drew it, before normalization (fields set past ``__post_init__``, for the test
    alone): the drawn skip, and the drawn head and tail where normalization moved layers."""
    drawn = copy.copy(spec)
    object.__setattr__(drawn, "skip", params["skip"])
    if not spec.levels and "n_tail" in params:
        n = params["n_head"]
        object.__setattr__(drawn, "head", spec.head[:n])
        object.__setattr__(drawn, "tail", spec.head[n:] + spec.tail)
    return drawn


@pytest.mark.parametrize("name", ss.list_spaces())
def test_one_arch_id_per_network(name: str) -> None:
    """Over thousands of random draws, no two arch_ids share a network, and normalization never changes one.
    The network is ``plan.identity``: the plan's ops in forward order with their shapes, kernels, strides,
    ReLUs and residual adds (which fix the graph: each add's other operand follows from the order) plus what
    SearchedNet reads beside the plan (task, scale, the base's resize kind, colour); module names are left out,
    since ``head2`` and ``tail1`` compute the same. The draws held non-canonical specs (normalization ran);
    where a spec says skip 'add', the plan adds somewhere."""
    space = ss.get_space(name)
    normalized = 0
    for size in SIZES[space.kind]:
        rng = random.Random(f"{name}-{size}")
        ids: dict[tuple[object, ...], set[str]] = defaultdict(set)
        for _ in range(N_DRAWS):
            spec, params = space.complete({}, rng, size)  # every choice drawn from rng, and kept
            network = identity(spec, *size)
            ids[network].add(spec.arch_id)
            if spec.stated_id != spec.arch_id:
                normalized += 1
                drawn = as_drawn(spec, params)
                assert drawn.arch_id == spec.stated_id and identity(drawn, *size) == network, spec.summary()
            if spec.skip == "add":
                assert any(op.residual for op in plan(spec, *size)), spec.summary()
        shared = [sorted(group) for group in ids.values() if len(group) > 1]
        assert not shared, f"{name} at {size}: {len(shared)} networks with several arch_ids, e.g. {shared[0]}"
    assert normalized > N_DRAWS / 10


def test_canonical_specs_keep_their_ids() -> None:
    """Every reference net, and every seeded draw canonical as drawn, has the id the code before normalization
    gave it; ``stated_id`` is that old id for every draw, canonical or not."""
    lines = []
    for name in ss.list_spaces():
        space = ss.get_space(name)
        for ref, spec in (space.references() | space.modern_references()).items():
            assert spec.stated_id == spec.arch_id, f"{name}/{ref} is not canonical"
            lines.append(f"{name}/{ref}={spec.arch_id}")
    assert ids_digest(lines) == REFERENCE_IDS_BEFORE
    draws = [ss.get_space(name).random_spec(random.Random(seed), size) for name in ss.list_spaces()
             for size in ((135, 240), (136, 240)) for seed in range(150)]
    assert ids_digest([spec.stated_id for spec in draws]) == DRAW_IDS_BEFORE
    assert any(spec.stated_id != spec.arch_id for spec in draws)


def test_skip_add_with_nothing_to_add_is_skip_none() -> None:
    """One head layer (3 channels in, 16 out) has no input of its width: skip 'add' changes nothing."""
    twin = rgb_sr((16, 3))
    stated = rgb_sr((16, 3), skip="add")
    assert stated == twin and stated.arch_id == twin.arch_id and stated.skip == "none"
    assert stated.stated_id != twin.arch_id       # the id it had before
    again = ArchSpec.from_json(json.dumps({**twin.to_dict(), "skip": "add"}))
    assert again.arch_id == twin.arch_id and again.stated_id == stated.stated_id
    assert len({rgb_sr((16, 3), (32, 3), skip="add").arch_id, rgb_sr((16, 3), (32, 3)).arch_id}) == 1
    kept = rgb_sr((16, 3), (16, 3), skip="add")   # the second layer adds its input: a different network
    assert kept.skip == "add" and kept.arch_id == kept.stated_id != rgb_sr((16, 3), (16, 3)).arch_id
    level = denoise((Conv(16, 3),), levels=(Level(32, (Conv(32, 3),)),), skip="add")  # a level body adds
    assert level.skip == "add"


def test_a_tail_without_levels_is_part_of_the_head() -> None:
    """Without levels, head and tail are one run of convs: the canonical spec holds them in the head (up to the
    stage limit), and the denoise space still reaches it through its parameters."""
    a, b, c = Conv(16, 3), Conv(24, 1), Conv(8, 5)
    canonical = denoise((a, b, c))
    for head, tail in (((a,), (b, c)), ((a, b), (c,))):
        split = denoise(head, tail)
        assert split == canonical and split.arch_id == canonical.arch_id != split.stated_id
    long = denoise((a,) * 10, (b,) * 10)
    assert (len(long.head), len(long.tail)) == (16, 4)
    with_level = denoise((a,), (b,), levels=(Level(16),))
    assert with_level.tail == (b,) and with_level.arch_id == with_level.stated_id
    space = ss.get_space("denoise")
    five = denoise((a, b, c, a, b))
    assert space.draw(FixedChooser(space.params_of(five)), (135, 240)) == five


def test_legacy_weights_take_the_canonical_names() -> None:
    """Weights saved for a split head and tail load into the canonical net, the same convs in the same order."""
    split = denoise((Conv(16, 3),), (Conv(24, 1), Conv(8, 3)))
    net = ss.build(split)
    state = net.state_dict()
    legacy = {k.replace("head.convs.1.", "tail.convs.0.").replace("head.convs.2.", "tail.convs.1."): v
              for k, v in state.items()}
    assert set(legacy) != set(state)
    back = restaged(split, legacy)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    assert restaged(split, state) == state


def legacy_run_dir(path: Path, spec_json: dict, arch_id: str, weights: dict[str, torch.Tensor] | None = None) -> RunDir:
    """A run dir written before normalization: arch.json as written then, keyed by the id it had then."""
    from safetensors.torch import save_file

    from nas.rundir import TrialRow

    writer = RunDirWriter(path)
    writer.check("s")
    writer.create()
    writer.write_trials([TrialRow(number=0, state="COMPLETE", arch_id=arch_id)])
    writer.write_run_json({"study": "s", "config": {"budget_ms": 1.0}, "summary": None})
    folder = path / "archs" / arch_id
    folder.mkdir(parents=True)
    (folder / "arch.json").write_text(json.dumps(spec_json, indent=2) + "\n")
    if weights is not None:
        save_file(weights, str(folder / "weights.safetensors"))
    return RunDir.load(path)


def test_an_old_non_canonical_arch_json_still_loads(tmp_path: Path) -> None:
    """A run dir keyed by a spec's old id reads as the canonical spec, its weights under the canonical names;
    an arch.json that is neither is still refused as edited."""
    split = denoise((Conv(16, 3),), (Conv(16, 3),), skip="add")
    old = {**split.to_dict(), "head": [Conv(16, 3).to_dict()], "tail": [Conv(16, 3).to_dict()]}
    old_id = ArchSpec.from_dict(old).stated_id
    assert old_id != split.arch_id and split.answers_to(old_id)
    state = {k.replace("head.convs.1.", "tail.convs.0."): v for k, v in ss.build(split).state_dict().items()}
    run = legacy_run_dir(tmp_path / "run", old, old_id, state)
    spec = run.spec(old_id)
    assert spec == split and spec.arch_id == split.arch_id
    ss.build(spec).load_state_dict(run.weights(old_id), strict=True)
    other = legacy_run_dir(tmp_path / "edited", old, "e" * 64)
    with pytest.raises(SpecError, match="the run dir was edited"):
        other.spec("e" * 64)


def test_a_shared_study_trial_with_an_old_id_is_materialized_under_the_canonical_id(tmp_path: Path) -> None:
    """materialize maps a trial recorded before normalization to its canonical id and finds its training
    under the id it was trained under."""
    from optuna.trial import TrialState, create_trial

    from nas.search.shared_study import materialize
    from nas.training.train import TrainResult
    from nas.training.train_cache import TrainCache

    spec = rgb_sr((16, 3))
    old = {**spec.to_dict(), "skip": "add"}
    old_id = ArchSpec.from_dict(old).stated_id
    cache = TrainCache(str(tmp_path / "nas.db"))
    result = TrainResult(psnr_db=30.0, bicubic_psnr_db=29.0, psnr_gain_db=1.0, ssim=0.9, loss_curve=[[1, 0.1]],
                         val_curve=[[1, 1.0]], train_s=1.0, moved=True, state_dict=ss.build(spec).state_dict())
    cache.put(old_id, "h" * 64, "d" * 64, result)
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("identity", {"train_config": "h" * 64, "data": "d" * 64})
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=1.0, user_attrs={
        "arch_id": old_id, "spec": json.dumps(old), "latency": {"median_ms": 0.3}, "train": {"psnr_gain_db": 1.0}}))
    writer = RunDirWriter(tmp_path / "run")
    writer.create()
    done = materialize(study, writer, cache, Budget(1.0))
    assert [r.arch_id for r in done.rows] == [spec.arch_id] and not done.missing_weights
    assert (tmp_path / "run" / "archs" / spec.arch_id / "weights.safetensors").is_file()


@pytest.mark.parametrize("name", ["denoise", "sr2x"])
def test_the_evolution_sampler_proposes_no_network_twice(name: str) -> None:
    """A search as in tests/test_samplers.py (latency = MACs, quality = log parameters) at 135x240, where
    denoise has no levels and many spellings of one network: with the space's ``complete`` no two trials are
    one network; without it (only exact parameters told apart) some are."""
    space, size, budget = ss.get_space(name), (135, 240), Budget(2.0)

    def repeats(complete: bool, seed: int) -> int:
        sampler = EvolutionSampler(budget, seed=seed, complete=partial(space.complete, input_size=size)
                                   if complete else None)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        ids = []
        for _ in range(40):
            trial = study.ask()
            spec = space.sample(trial, size)
            ids.append(spec.arch_id)
            counts = ss.count(spec, *size)
            if latency_gate(study, trial, counts.macs / 1e8, budget):
                study.tell(trial, math.log(counts.params))
        return len(ids) - len(set(ids))

    assert [repeats(True, seed) for seed in range(3)] == [0, 0, 0]
    assert sum(repeats(False, seed) for seed in range(3)) > 0
