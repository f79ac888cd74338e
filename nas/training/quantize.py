"""The quality of a trained net in int8: post-training quantization, then quantization-aware fine-tuning if needed.

The float net from the short training is exported, quantized by ONNX Runtime (search_spaces/onnx_quant.py: QDQ,
per-channel int8 weights, activations calibrated on training patches) and validated as ONNX Runtime runs it.
When that post-training quantization (PTQ) loses more than ``QAT_THRESHOLD_DB`` against the float net, the net is
fine-tuned quantization-aware (QAT): every conv sees its input and its weights fake-quantized (straight-through
gradients: ``torch.fake_quantize_*``), then it is quantized and validated again the same way. The better of the
two int8 graphs is the candidate's int8 result; its gain is the score a search at int8 ranks by.
"""

from __future__ import annotations

import math
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.training.data import PatchSampler, TaskData, val_pairs
from nas.training.metrics import parse_loss, psnr, ssim
from nas.training.train import TrainConfig, baseline, lr_factor
from search_spaces import ArchSpec, build

# QAT runs when PTQ loses more than this much gain (dB) against the float net. Measured (reports/int8.md, 300-step
# trainings, bundled photos): PTQ cost ESPCN 0.033, ABPN 0.042, ECBSR-M4C16 0.032 dB, and 60 QAT steps won back
# 0.013, 0.022 and 0.004 dB; below 0.02 dB there is little left to win for the seconds QAT costs.
QAT_THRESHOLD_DB = 0.02
CALIBRATION_PATCHES = 32   # training patches the activation ranges are calibrated on
QAT_FRACTION = 0.2         # QAT steps as a fraction of the short training's (at least QAT_MIN_STEPS)
QAT_MIN_STEPS = 50
QAT_LR_FACTOR = 0.1        # QAT fine-tunes at this fraction of the training's learning rate, cosine to zero
INT8_PROTOCOL = 1          # bump when anything above changes meaning: it is part of the int8 training-cache key


@dataclass(frozen=True)
class Int8Result:
    """A trained net's int8 quality: the float gain, PTQ's, QAT's (NaN when not run) and the graph that won."""

    float_gain_db: float
    ptq_gain_db: float
    qat_gain_db: float
    psnr_db: float        # of the int8 net that won (PTQ's or QAT's)
    bicubic_psnr_db: float
    ssim: float
    qat_steps: int        # 0: QAT was not needed
    int8_s: float         # seconds spent calibrating, fine-tuning and validating
    graph: bytes = field(repr=False, compare=False)  # the QDQ ONNX graph that won
    state_dict: dict[str, torch.Tensor] = field(repr=False, compare=False)  # its float weights (QAT's or training's)

    @property
    def gain_db(self) -> float:
        return self.psnr_db - self.bicubic_psnr_db

    @property
    def method(self) -> str:
        return "qat" if self.qat_steps and self.qat_gain_db > self.ptq_gain_db else "ptq"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (no weights, no graph)."""
        return {"float_gain_db": self.float_gain_db, "ptq_gain_db": self.ptq_gain_db, "qat_gain_db": self.qat_gain_db,
                "int8_gain_db": self.gain_db, "psnr_db": self.psnr_db, "bicubic_psnr_db": self.bicubic_psnr_db,
                "ssim": self.ssim, "qat_steps": self.qat_steps, "method": self.method, "int8_s": self.int8_s}


def int8_key(config: TrainConfig) -> str:
    """The training-cache config hash of the int8 result: the float training's, the int8 recipe and its version."""
    import hashlib
    import json

    from search_spaces.onnx_quant import quant_settings

    blob = json.dumps({"train": config.hash(), "precision": "int8", "protocol": INT8_PROTOCOL,
                       "quant": quant_settings("ort"), "threshold_db": QAT_THRESHOLD_DB}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def calibration_inputs(data: TaskData, config: TrainConfig, n: int = CALIBRATION_PATCHES) -> list[np.ndarray]:
    """``n`` training patches (1, 3, p, p), drawn from a stream of their own (seeded by the training's seed)."""
    sampler = PatchSampler(data, config.patch_size, seed=config.seed + 7919, noise_sigma=config.noise_sigma)
    inp, _ = sampler.batch(n)
    return [inp[i:i + 1].numpy() for i in range(n)]


def int8_graph(net: nn.Module, calibration: list[np.ndarray]) -> bytes:
    """The QDQ graph of ``net`` (free height and width) calibrated on ``calibration``."""
    from search_spaces.onnx_export import graph_bytes
    from search_spaces.onnx_quant import quantize_graph

    graph = graph_bytes(net, calibration[0].shape, dynamic=True, check=False)
    return quantize_graph(graph, calibration, "ort")


def ort_validate(graph: bytes, pairs: list[tuple[torch.Tensor, torch.Tensor]], kind: str,
                 scale: int) -> tuple[float, float, float]:
    """(PSNR, baseline PSNR, SSIM) of ``graph`` as ONNX Runtime runs it on the CPU, as ``train.validate`` scores."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    border = scale if kind == "sr" else 0
    p_net, p_base, s_net = [], [], []
    for inp, tgt in pairs:
        out = torch.from_numpy(sess.run(None, {name: inp.numpy()})[0]).clamp(0, 1)
        p_net.append(float(psnr(out, tgt, border)[0]))
        p_base.append(float(psnr(baseline(inp, kind, scale), tgt, border)[0]))
        s_net.append(float(ssim(out, tgt, border)[0]))
    n = len(pairs)
    return sum(p_net) / n, sum(p_base) / n, sum(s_net) / n


# ---------------------------------------------------------------------- quantization-aware fine-tuning
WEIGHT_LEVELS = 63  # the ``ort`` scheme's 7-bit weights (search_spaces/onnx_quant.py): [-63, 63]


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric fake quantization of a conv weight (straight-through gradient)."""
    scale = (w.detach().abs().amax(dim=(1, 2, 3)) / WEIGHT_LEVELS).clamp_min(1e-8).float()
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -WEIGHT_LEVELS, WEIGHT_LEVELS)


def _fake_quant_input(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """uint8 asymmetric fake quantization of an activation over [lo, hi] (containing 0), as ONNX Runtime's QDQ."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    zero = int(min(255, max(0, round(-lo / scale))))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


@contextmanager
def fake_quantized(net: nn.Module, calibration: torch.Tensor) -> Iterator[None]:
    """Within the block every conv of ``net`` quantizes its input (ranges calibrated once on ``calibration``) and
    its weights on the fly; the module's parameters and state dict are untouched (the forward is swapped)."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    ranges: dict[int, list[float]] = {}

    def observe(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        r = ranges.setdefault(id(module), [math.inf, -math.inf])
        r[0], r[1] = min(r[0], float(args[0].min())), max(r[1], float(args[0].max()))

    hooks = [c.register_forward_pre_hook(observe) for c in convs]
    with torch.no_grad():
        net(calibration)
    for h in hooks:
        h.remove()

    def forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        lo, hi = ranges[id(self)]
        return self._conv_forward(_fake_quant_input(x, lo, hi), _fake_quant_weight(self.weight), self.bias)

    for c in convs:
        c.forward = types.MethodType(forward, c)
    try:
        yield
    finally:
        for c in convs:
            del c.forward


def qat_finetune(spec: ArchSpec, state_dict: dict[str, torch.Tensor], data: TaskData, config: TrainConfig,
                 steps: int, calibration: list[np.ndarray], device: str = "cpu") -> dict[str, torch.Tensor]:
    """Fine-tune the trained plain net quantization-aware for ``steps`` steps; its new float weights."""
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        net = build(spec)
        net.load_state_dict(state_dict)
        net = net.to(dev).train()
        loss_fn = parse_loss(config.loss)
        sampler = PatchSampler(data, config.patch_size, seed=config.seed + 1, rotate=config.rotate,
                               noise_sigma=config.noise_sigma)
        lr = config.lr * QAT_LR_FACTOR
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, steps, 0))
        with fake_quantized(net, torch.from_numpy(np.concatenate(calibration)).to(dev)):
            for _ in range(steps):
                inp, tgt = sampler.batch(config.batch_size)
                loss = loss_fn(net(inp.to(dev)), tgt.to(dev))
                if not math.isfinite(loss.item()):
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in net.state_dict().items()}


def qat_steps_for(config: TrainConfig) -> int:
    """QAT's steps at the end of a short training of ``config.steps``."""
    return max(QAT_MIN_STEPS, int(config.steps * QAT_FRACTION))


def quantize_trained(spec: ArchSpec, state_dict: dict[str, torch.Tensor], float_gain_db: float, data: TaskData,
                     config: TrainConfig, device: str = "cpu", threshold_db: float = QAT_THRESHOLD_DB,
                     qat_steps: int | None = None) -> Int8Result:
    """The int8 quality of a trained net: PTQ, and QAT when PTQ loses more than ``threshold_db``."""
    t0 = time.perf_counter()
    calibration = calibration_inputs(data, config)
    pairs = val_pairs(data, config.noise_sigma)
    net = build(spec)
    net.load_state_dict(state_dict)
    ptq_graph = int8_graph(net, calibration)
    ptq = ort_validate(ptq_graph, pairs, data.kind, data.scale)
    ptq_gain = ptq[0] - ptq[1]
    best, graph, weights, qat_gain, steps = ptq, ptq_graph, state_dict, math.nan, 0
    if float_gain_db - ptq_gain > threshold_db:
        steps = qat_steps if qat_steps is not None else qat_steps_for(config)
        tuned = qat_finetune(spec, state_dict, data, config, steps, calibration, device)
        net.load_state_dict(tuned)
        qat_graph = int8_graph(net, calibration)
        qat = ort_validate(qat_graph, pairs, data.kind, data.scale)
        qat_gain = qat[0] - qat[1]
        if qat_gain > ptq_gain:
            best, graph, weights = qat, qat_graph, tuned
    return Int8Result(float_gain_db=float_gain_db, ptq_gain_db=ptq_gain, qat_gain_db=qat_gain, psnr_db=best[0],
                      bicubic_psnr_db=best[1], ssim=best[2], qat_steps=steps, int8_s=time.perf_counter() - t0,
                      graph=graph, state_dict=weights)
