"""A baseline's quality on the search's validation data with the search's metric: as the user has it
(ONNX Runtime, the pretrained weights) and retrained from scratch with the search's short training."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nas.training.data import PatchSampler, TaskData, val_pairs
from nas.training.metrics import parse_loss, psnr, ssim, temporal_psnr
from nas.training.train import TrainResult, baseline, optimizer_for, train_step

if TYPE_CHECKING:
    from nas.baseline.load import Baseline
    from nas.training.train import TrainConfig
    from nas.training.train_cache import TrainCache

Frame = Callable[[torch.Tensor], torch.Tensor]
KB, KR = 0.114, 0.299  # BT.601 (JPEG's full-range YCbCr), as the metrics' luma


def to_ycbcr(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,3,H,W) RGB in [0,1] -> luma (N,1,H,W) and chroma (N,2,H,W) centred on 0.5."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = KR * r + (1 - KR - KB) * g + KB * b
    return y, torch.cat([(b - y) / (2 * (1 - KB)) + 0.5, (r - y) / (2 * (1 - KR)) + 0.5], dim=1)


def to_rgb(y: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    cb, cr = chroma[:, 0:1] - 0.5, chroma[:, 1:2] - 0.5
    r, b = y + 2 * (1 - KR) * cr, y + 2 * (1 - KB) * cb
    g = (y - KR * r - KB * b) / (1 - KR - KB)
    return torch.cat([r, g, b], dim=1)


def on_luma(net: Frame, rgb: torch.Tensor, kind: str, scale: int) -> torch.Tensor:
    """A luma network applied to an RGB frame: Y through the net, chroma by the task's classical base."""
    y, chroma = to_ycbcr(rgb)
    return to_rgb(net(y), baseline(chroma, kind, scale))


class LumaNet(nn.Module):
    """A luma (Y in, Y out) module as an RGB one, so it trains and validates like any candidate."""

    def __init__(self, core: nn.Module, kind: str, scale: int) -> None:
        super().__init__()
        self.core, self.kind, self.scale = core, kind, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return on_luma(self.core, x, self.kind, self.scale)


@torch.no_grad()
def judge(net: Frame, pairs: list[tuple[torch.Tensor, torch.Tensor]], kind: str, scale: int,
          sequence: bool) -> dict[str, float | None]:
    """PSNR, the classical base's PSNR, the gain, SSIM (and flicker on a clip) as the search's validation has them."""
    border = scale if kind == "sr" else 0
    p_net, p_base, s_net, outs = [], [], [], []
    for inp, tgt in pairs:
        out = net(inp).float().clamp(0, 1)
        p_net.append(float(psnr(out, tgt, border)[0]))
        p_base.append(float(psnr(baseline(inp, kind, scale), tgt, border)[0]))
        s_net.append(float(ssim(out, tgt, border)[0]))
        outs.append(out)
    n = len(pairs)
    flicker = temporal_psnr(outs, [t for _, t in pairs], border) if sequence else None
    return {"psnr_db": sum(p_net) / n, "bicubic_psnr_db": sum(p_base) / n,
            "psnr_gain_db": (sum(p_net) - sum(p_base)) / n, "ssim": sum(s_net) / n,
            "temporal_psnr_db": flicker}


def pretrained(b: Baseline, data: TaskData, config: TrainConfig) -> dict[str, Any]:
    """The graph as the user has it, run by ONNX Runtime on each validation crop."""
    import numpy as np

    from nas.baseline.load import run_graph

    dtype = np.float16 if b.graph.io_dtype == "fp16" else np.float32

    def core(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run_graph(b.graph.data, x.numpy().astype(dtype)).astype(np.float32))

    def net(x: torch.Tensor) -> torch.Tensor:
        return on_luma(core, x, data.kind, data.scale) if b.graph.channels == 1 else core(x)

    return judge(net, val_pairs(data, config.noise_sigma), data.kind, data.scale, data.val_sequence)


def reset(module: nn.Module) -> None:
    """Fresh weights for every layer that can draw them (PyTorch's own initialization of that layer)."""
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def retrained(b: Baseline, data: TaskData, config: TrainConfig, device: str = "cpu",
              cache: TrainCache | None = None) -> dict[str, Any]:
    """The converted graph, re-initialized and trained with the search's short training (plain: no
    re-parameterized blocks, which only the search's own convs take), then judged like the pretrained view.
    Through ``cache`` when given: an ordinary training row keyed by the graph's content id, the plain config's
    hash and the data, so a second search, the bench's long training and ``nas report`` answer from one row."""
    plain = replace(config, reparam="none")
    key = (b.graph.arch_id, plain.hash(), data.data_id)
    result = None if cache is None else cache.get(*key)
    cached = result is not None
    if result is None:
        result = _train_plain(b, data, plain, device)
        if cache is not None and result.moved:  # a diverged training is retried next time, as a candidate's is
            cache.put(*key, result, plain.to_dict())
    return {"psnr_db": result.psnr_db, "bicubic_psnr_db": result.bicubic_psnr_db,
            "psnr_gain_db": result.psnr_gain_db, "ssim": result.ssim,
            "temporal_psnr_db": None if math.isnan(result.temporal_psnr_db) else result.temporal_psnr_db,
            "steps": config.steps, "train_s": 0.0 if cached else result.train_s, "diverged": not result.moved,
            "reparam": "none", "cached": cached}


def _train_plain(b: Baseline, data: TaskData, config: TrainConfig, device: str) -> TrainResult:
    """The training loop of ``retrained``: short_train's sampler, optimizer, schedule and step on a converted module."""
    from search_spaces.onnx_import import to_module

    dev = torch.device(device)
    t0 = time.perf_counter()
    loss_fn = parse_loss(config.loss)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        core = to_module(b.graph.data)
        reset(core)
        net: nn.Module = LumaNet(core, data.kind, data.scale) if b.graph.channels == 1 else core
        net = net.to(dev).train()
        sampler = PatchSampler(data, config.patch_size, seed=config.seed, rotate=config.rotate,
                               noise_sigma=config.noise_sigma)
        opt, sched = optimizer_for(net, config)
        diverged = False
        for _ in range(config.steps):
            inp, tgt = sampler.batch(config.batch_size)
            if not math.isfinite(train_step(net, inp.to(dev), tgt.to(dev), loss_fn, opt, sched, config.train_dtype)):
                diverged = True
                break
        net.eval()
        pairs = [(i.to(dev), t.to(dev)) for i, t in val_pairs(data, config.noise_sigma)]
        judged = judge(net, pairs, data.kind, data.scale, data.val_sequence)
    flicker = judged["temporal_psnr_db"]
    return TrainResult(
        psnr_db=judged["psnr_db"], bicubic_psnr_db=judged["bicubic_psnr_db"], psnr_gain_db=judged["psnr_gain_db"],
        ssim=judged["ssim"], loss_curve=[], val_curve=[[config.steps, judged["psnr_gain_db"]]],
        train_s=time.perf_counter() - t0, moved=not diverged,
        state_dict={k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in net.state_dict().items()},
        temporal_psnr_db=math.nan if flicker is None else flicker)
