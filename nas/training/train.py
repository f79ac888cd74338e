"""Short training of one candidate: deterministic for a seed, validated against the classical baseline.

Adam, a linear learning-rate warm-up then a cosine decay to zero, random patches with flips,
loss from ``--loss`` (L1 by default). At the end the net is validated on held-out images: PSNR
(RGB, border = scale cropped for SR) of the net and of plain bicubic upsampling of the same
low-resolution input (for denoise: of the noisy input itself), and the gain between the two; and
the temporal stability of the net: shift consistency on every validation image, flicker on a clip.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, astuple, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F

from nas.errors import NasError, UsageError
from nas.training.data import PatchSampler, TaskData, val_pairs
from nas.training.dtype import TRAIN_DTYPES, layout_for, recipe_fields
from nas.training.metrics import parse_loss, psnr, shift_consistency, shift_crops, ssim, temporal_psnr
from nas.training.reparam import KINDS as REPARAM_KINDS
from nas.training.reparam import collapse, fan_ins, reparameterize
from search_spaces import ArchSpec, SearchedNet, build

TRAIN_PROTOCOL = 3  # bump when the training loop changes meaning: it is part of the cache key
LOSS_POINTS = 100   # the loss curve keeps at most this many points (each a mean over its window)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a short training's result (with the spec and the data).

    ``patch_size`` is the low-resolution (network input) side; targets are ``patch_size * scale``.
    ``warmup_steps`` is capped at half of ``steps``. Conv weights whose fan-in exceeds ``lr_fan_in``
    train at ``lr * sqrt(lr_fan_in / fan_in)`` (0 turns that off; see ``param_groups``). ``noise_sigma``
    is in 8-bit levels (denoise only). ``val_every`` > 0 adds validation points
    to ``val_curve`` during training (0: validate only at the end). ``reparam`` trains each conv as
    that re-parameterized block (nas/reparam.py) and keeps the collapsed plain net.
    """

    # Defaults measured in reports/training.md: a 70-225 MMAC net trains in about 7-15 s on 2 CPU
    # cores and gains about +0.5 dB over bicubic on the bundled validation photos.
    steps: int = 500
    batch_size: int = 16
    patch_size: int = 48
    lr: float = 3e-3
    warmup_steps: int = 100
    lr_fan_in: int = 144
    loss: str = "l1"
    seed: int = 0
    noise_sigma: float = 25.0
    rotate: bool = False
    val_every: int = 0
    # ECBSR's edge-oriented blocks: best of none/linear/ecb on every net measured (SR and denoise), at
    # 1.15-1.30x a plain step (reports/reparam.md); the shipped net is the same plain net
    reparam: str = "ecb"
    train_dtype: str = "fp32"  # "bf16": the forward pass under bf16 autocast, channels-last (resolve_train_dtype)

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UsageError(msg)

        need(isinstance(self.steps, int) and self.steps >= 1, f"--train-steps must be >= 1, got {self.steps}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"batch size must be >= 1, got {self.batch_size}")
        need(isinstance(self.patch_size, int) and self.patch_size >= 8,
             f"patch size must be an integer >= 8, got {self.patch_size}")
        need(math.isfinite(self.lr) and self.lr > 0, f"learning rate must be > 0, got {self.lr}")
        need(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
             f"warm-up steps must be >= 0, got {self.warmup_steps}")
        need(isinstance(self.lr_fan_in, int) and self.lr_fan_in >= 0, f"lr_fan_in must be >= 0, got {self.lr_fan_in}")
        need(math.isfinite(self.noise_sigma) and self.noise_sigma >= 0,
             f"noise sigma must be >= 0 (8-bit levels), got {self.noise_sigma}")
        need(isinstance(self.val_every, int) and self.val_every >= 0, f"val_every must be >= 0, got {self.val_every}")
        need(self.train_dtype in TRAIN_DTYPES, f"--train-dtype must be fp32 or bf16, got {self.train_dtype!r}")
        need(self.reparam in REPARAM_KINDS,
             f"--reparam must be one of {', '.join(REPARAM_KINDS)}, got {self.reparam!r}")
        object.__setattr__(self, "loss", parse_loss(self.loss).canonical)  # "L1 + hfen:0.10" -> "l1+hfen:0.1"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        """sha256 of the canonical JSON of the config and TRAIN_PROTOCOL: the training-cache key. An fp32 training
        leaves ``train_dtype`` out, so the keys of trainings cached before it existed stay valid."""
        d = {k: v for k, v in self.to_dict().items() if (k, v) != ("train_dtype", "fp32")}
        blob = json.dumps({**d, **recipe_fields(self.train_dtype), "protocol": TRAIN_PROTOCOL}, sort_keys=True,
                          separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one short training. ``moved`` is False when the output conv still has zero
    weights or sees only dead (zero) features, or the loss diverged: a training failure, not a
    verdict on the architecture. ``state_dict`` holds fp32 CPU tensors."""

    psnr_db: float
    bicubic_psnr_db: float
    psnr_gain_db: float
    ssim: float
    loss_curve: list[list[float]]  # [[step, mean loss over the window ending at step], ...]
    val_curve: list[list[float]]   # [[step, psnr_gain_db], ...]; the last point is the final validation
    train_s: float
    moved: bool
    state_dict: dict[str, torch.Tensor] = field(repr=False, compare=False)
    shift_consistency_db: float = math.nan  # nas.training.metrics.shift_consistency, mean over the validation images
    temporal_psnr_db: float = math.nan      # nas.training.metrics.temporal_psnr over the validation clip; NaN: no clip
    stopped_at: int | None = None           # the rung step where ``on_rung`` stopped it; None: trained in full
    resumed_from: int | None = None         # the step of the partial training it went on from; None: from scratch
    resumed_s: float = 0.0                  # seconds of ``train_s`` spent before, by the partial training
    checkpoint: Checkpoint | None = field(default=None, repr=False, compare=False)  # a stopped training's, to resume

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (no weights), as train.json stores them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("state_dict", "checkpoint")}


@dataclass(frozen=True)
class Checkpoint:
    """A training stopped at a rung, with everything needed to go on exactly as if it had never stopped:
    the over-parameterized weights, Adam's state, the scheduler's step and both random streams (tensors,
    stored as safetensors), and the curves, loss accumulator, rung validations and time so far (JSON)."""

    step: int
    tensors: dict[str, torch.Tensor] = field(repr=False)  # "net.NAME", "opt.I.KEY", "rng.sampler", "rng.torch"
    meta: dict[str, Any] = field(repr=False)

    @staticmethod
    def capture(step: int, net: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, sampler: PatchSampler,
                meta: dict[str, Any]) -> Checkpoint:
        tensors = {f"net.{k}": v.detach().cpu().clone() for k, v in net.state_dict().items()}
        opt_state = opt.state_dict()
        for index, state in opt_state["state"].items():
            for key, value in state.items():
                tensors[f"opt.{index}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
        tensors["rng.sampler"] = sampler.gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        sched_state = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
        return Checkpoint(step, tensors, {**meta, "param_groups": opt_state["param_groups"], "sched": sched_state})

    def restore(self, net: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, sampler: PatchSampler) -> None:
        """Load the state into a freshly built net, optimizer, scheduler and sampler of the same training;
        raises CheckpointMismatch when the checkpoint does not fit them."""
        try:
            weights = {k.removeprefix("net."): v for k, v in self.tensors.items() if k.startswith("net.")}
            own = net.state_dict()
            if set(weights) != set(own) or any(weights[k].shape != own[k].shape for k in own):
                raise ValueError("the checkpoint's weights are not this net's")
            if not set(self.meta) >= RESUME_KEYS:
                raise ValueError(f"the checkpoint lacks {sorted(RESUME_KEYS - set(self.meta))}")
            net.load_state_dict(weights)
            state: dict[int, dict[str, torch.Tensor]] = {}
            for name, value in self.tensors.items():
                if name.startswith("opt."):
                    _, index, key = name.split(".", 2)
                    state.setdefault(int(index), {})[key] = value.clone()
            groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in self.meta["param_groups"]]
            opt.load_state_dict({"state": state, "param_groups": groups})
            sched.load_state_dict({**self.meta["sched"], "lr_lambdas": [None] * len(opt.param_groups)})
            sampler.gen.set_state(self.tensors["rng.sampler"])
            torch.set_rng_state(self.tensors["rng.torch"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointMismatch(str(exc)) from exc


class CheckpointMismatch(NasError):
    """A stored checkpoint that does not fit the training it was found for (the trainer starts over)."""


RESUME_KEYS = frozenset({"loss_curve", "val_curve", "acc", "n_acc", "train_s", "checks", "param_groups", "sched"})


@dataclass(frozen=True)
class Validation:
    psnr_db: float
    bicubic_psnr_db: float
    ssim: float
    moved: bool

    @property
    def gain_db(self) -> float:
        return self.psnr_db - self.bicubic_psnr_db


def baseline(inp: torch.Tensor, kind: str, scale: int) -> torch.Tensor:
    """The classical result the gain is measured against: bicubic upsampling for SR, the (noisy or
    degraded) input itself for denoise and enhance; clamped to [0, 1]."""
    if kind != "sr":
        return inp.clamp(0, 1)
    return F.interpolate(inp, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


@torch.no_grad()
def validate(net: SearchedNet, pairs: list[tuple[torch.Tensor, torch.Tensor]], kind: str, scale: int,
             device: torch.device) -> Validation:
    """Mean per-image PSNR / SSIM of the net (output clamped) and of the baseline on ``pairs``.

    ``moved`` is True when the output conv has nonzero weights and some feature reaching it is
    nonzero on the validation images: otherwise the output is the classical base plus a fixed bias
    pattern (zero-initialized output conv never reached, or every ReLU before it dead).
    """
    border = scale if kind == "sr" else 0
    was_training = net.training
    net.eval()
    live = [False]  # set by the hook: any nonzero feature at the output conv's input

    def see_features(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        live[0] = live[0] or bool(args[0].abs().max() > 0)

    hook = net.out.register_forward_pre_hook(see_features)
    p_net, p_base, s_net = [], [], []
    try:
        for inp, tgt in pairs:
            inp, tgt = inp.to(device), tgt.to(device)
            out = net(inp).clamp(0, 1)                          # (1,3,sh,sw)
            p_net.append(float(psnr(out, tgt, border)[0]))
            p_base.append(float(psnr(baseline(inp, kind, scale), tgt, border)[0]))
            s_net.append(float(ssim(out, tgt, border)[0]))
    finally:
        hook.remove()
        net.train(was_training)
    moved = live[0] and bool(net.out.weight.abs().max() > 0)
    n = len(pairs)
    return Validation(sum(p_net) / n, sum(p_base) / n, sum(s_net) / n, moved)


@torch.no_grad()
def stability(net: SearchedNet, pairs: list[tuple[torch.Tensor, torch.Tensor]], kind: str, scale: int,
              sequence: bool, device: torch.device) -> tuple[float, float]:
    """(shift consistency dB, mean over the images large enough for it; flicker dB over ``pairs`` as an ordered
    clip when ``sequence``, else NaN): how steady the net's output is under a camera pan and over time."""
    was_training = net.training
    net.eval()
    try:
        shift = [shift_consistency(net, inp.to(device), scale) for inp, _ in pairs
                 if shift_crops(inp.shape[-2], inp.shape[-1]) is not None]
        flicker = math.nan
        if sequence:
            outs = [net(inp.to(device)).clamp(0, 1) for inp, _ in pairs]
            flicker = temporal_psnr(outs, [tgt.to(device) for _, tgt in pairs], scale if kind == "sr" else 0)
    finally:
        net.train(was_training)
    return (sum(shift) / len(shift) if shift else math.nan), flicker


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Multiplier of the base lr at ``step`` (0-based): linear warm-up to 1, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def param_groups(net: torch.nn.Module, lr: float, lr_fan_in: int) -> list[dict[str, Any]]:
    """Adam parameter groups: a conv weight with fan-in F > ``lr_fan_in`` gets lr * sqrt(lr_fan_in / F).

    Adam moves every weight by about lr per step whatever its gradient's size, so the pre-activations of
    a conv summing F inputs shift by up to ~lr * F * |x| per step while their spread under He init is
    ~sqrt(2F) * |x|: the relative shift grows like lr * sqrt(F). Deep candidates with 5x5/48+ layers
    (F >= 1200) lost every ReLU in the first steps at lr 3e-3 (reports/training.md, "Deep nets").
    A re-parameterized conv's branch weights all take the collapsed conv's fan-in (nas.training.reparam.fan_ins).
    """
    groups: list[dict[str, Any]] = []
    for param, fan_in in fan_ins(net):  # a conv weight (out, in, k, k) -> in * k * k
        scale = math.sqrt(lr_fan_in / fan_in) if lr_fan_in and fan_in > lr_fan_in else 1.0
        groups.append({"params": [param], "lr": lr * scale})
    return groups


def optimizer_for(net: torch.nn.Module, config: TrainConfig) -> tuple[torch.optim.Adam, Any]:
    """Adam over the fan-in groups and the warm-up + cosine schedule of every training here (candidates, baselines)."""
    opt = torch.optim.Adam(param_groups(net, config.lr, config.lr_fan_in), lr=config.lr)
    warmup = min(config.warmup_steps, config.steps // 2)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, config.steps, warmup))


def train_step(net: torch.nn.Module, inp: torch.Tensor, tgt: torch.Tensor, loss_fn: Callable[..., torch.Tensor],
               opt: torch.optim.Optimizer, sched: Any, dtype: str = "fp32") -> float:
    """One optimizer step on a batch already on the device; returns the loss, and takes no step when it is not finite
    (the caller stops: the training diverged). ``dtype`` bf16: the forward pass under autocast, the loss in fp32."""
    with torch.autocast(inp.device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
        out = net(inp)
    loss = loss_fn(out.float(), tgt)
    value = loss.item()
    if math.isfinite(value):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return value


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Fork the CPU RNG (the caller's stream is untouched) and pin cuDNN to deterministic kernels."""
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    with torch.random.fork_rng(devices=[]):
        if device.type == "cuda":
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield
        finally:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def short_train(spec: ArchSpec, data: TaskData, config: TrainConfig,
                progress: Callable[[int, int, float], None] | None = None,
                device: str | torch.device = "cpu", rungs: Sequence[int] = (),
                on_rung: Callable[[int, float], bool] | None = None,
                resume: Checkpoint | None = None, layout: torch.memory_format | None = None) -> TrainResult:
    """Train ``build(spec)`` for ``config.steps`` steps, from scratch or from ``resume``, and validate it.

    The net and its inputs train in ``layout`` memory (None: the dtype's, ``layout_for``). Validation runs in fp32.

    ``progress(step, steps, loss)`` is called about every 5 % of the steps. At each of ``rungs`` (steps
    below ``config.steps``) the net is validated and ``on_rung(step, gain_db)`` asked whether to stop: a
    stopped result has ``stopped_at`` set, the rung's validation, no stability metrics, and a
    ``checkpoint`` to go on from. Rungs never change a full training (validation draws no random
    numbers), so they are not in the cache key; nor does resuming (the checkpoint holds every state the
    loop carries: tests/test_pruning.py checks the weights are bit-identical). A resumed training first
    reports the rungs it had passed, from their stored validations, and may be stopped before any step.
    Raises UsageError when
    the spec does not fit the data's task or the patch size is not a multiple of the spec's
    ``size_multiple``.
    """
    if (spec.space, spec.scale) != (data.space_kind, data.scale):
        raise UsageError(f"spec is {spec.space} x{spec.scale} but the data was prepared for "
                         f"{data.kind} x{data.scale}: load the data for the spec's task")
    if config.patch_size % spec.size_multiple:
        raise UsageError(f"patch size {config.patch_size} is not a multiple of {spec.size_multiple}, which "
                         "this spec's space-to-depth and levels need: use a multiple of 16")
    dev = torch.device(device)
    layout = layout_for(config.train_dtype) if layout is None else layout
    loss_fn = parse_loss(config.loss)
    pairs = val_pairs(data, config.noise_sigma)
    window = max(1, math.ceil(config.steps / LOSS_POINTS))
    report_every = max(1, config.steps // 20)
    t0 = time.perf_counter()
    with _deterministic(dev):
        torch.manual_seed(config.seed)
        net = reparameterize(build(spec), config.reparam, keep=False).to(dev, memory_format=layout).train()
        sampler = PatchSampler(data, config.patch_size, seed=config.seed, rotate=config.rotate,
                               noise_sigma=config.noise_sigma)
        opt, sched = optimizer_for(net, config)
        loss_curve: list[list[float]] = []
        val_curve: list[list[float]] = []
        checks: dict[int, Validation] = {}  # the validation at each rung passed, for a checkpoint
        acc, n_acc, diverged, done_s = 0.0, 0, False, 0.0
        rung_steps, stopped = {r for r in rungs if 0 < r < config.steps}, None
        first, checkpoint = 1, None
        if resume is not None:
            if not 0 < resume.step < config.steps:
                raise CheckpointMismatch(f"a checkpoint at step {resume.step} of a {config.steps}-step training")
            resume.restore(net, opt, sched, sampler)
            m = resume.meta
            loss_curve, val_curve = [list(p) for p in m["loss_curve"]], [list(p) for p in m["val_curve"]]
            acc, n_acc, done_s, first = m["acc"], m["n_acc"], m["train_s"], resume.step + 1
            checks = {int(r): Validation(*v) for r, v in m["checks"].items()}
            for rung in sorted(checks):  # this trial's pruner has not seen them yet
                step = rung
                if rung in rung_steps and on_rung is not None and on_rung(rung, checks[rung].gain_db):
                    stopped = checks[rung]
                    val_curve = [p for p in val_curve if p[0] <= rung]
                    break
        for step in range(first, config.steps + 1) if stopped is None else ():
            inp, tgt = sampler.batch(config.batch_size)   # (B,3,p,p), (B,3,ps,ps)
            loss_value = train_step(net, inp.to(dev, memory_format=layout), tgt.to(dev), loss_fn, opt, sched,
                                    config.train_dtype)
            if not math.isfinite(loss_value):
                diverged = True
                break
            acc += loss_value
            n_acc += 1
            if step % window == 0 or step == config.steps:
                loss_curve.append([step, acc / n_acc])
                acc, n_acc = 0.0, 0
            if progress is not None and (step % report_every == 0 or step == config.steps):
                progress(step, config.steps, loss_value)
            at_rung = step in rung_steps
            if at_rung or (config.val_every and step % config.val_every == 0 and step < config.steps):
                check = validate(net, pairs, data.kind, data.scale, dev)
                val_curve.append([step, check.gain_db])
                if at_rung:
                    checks[step] = check
                if at_rung and on_rung is not None and on_rung(step, check.gain_db):
                    stopped = check
                    checkpoint = Checkpoint.capture(step, net, opt, sched, sampler, {
                        "loss_curve": [list(p) for p in loss_curve], "val_curve": [list(p) for p in val_curve],
                        "acc": acc, "n_acc": n_acc,
                        "train_s": done_s + time.perf_counter() - t0,
                        "checks": {str(r): list(astuple(v)) for r, v in checks.items()}})
                    break
        net = collapse(net)  # the plain net: what is stored, exported, timed and shipped
        if stopped is None:
            final = validate(net, pairs, data.kind, data.scale, dev)
            shift_db, flicker_db = stability(net, pairs, data.kind, data.scale, data.val_sequence, dev)
            val_curve.append([step, final.gain_db])
        else:
            final, shift_db, flicker_db = stopped, math.nan, math.nan
    train_s = done_s + time.perf_counter() - t0
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in net.state_dict().items()}
    return TrainResult(
        psnr_db=final.psnr_db, bicubic_psnr_db=final.bicubic_psnr_db, psnr_gain_db=final.gain_db,
        ssim=final.ssim, loss_curve=loss_curve, val_curve=val_curve, train_s=train_s,
        moved=final.moved and not diverged, state_dict=state,
        shift_consistency_db=shift_db, temporal_psnr_db=flicker_db,
        stopped_at=None if stopped is None else step,
        resumed_from=None if resume is None else resume.step, resumed_s=done_s,
        checkpoint=checkpoint,
    )
