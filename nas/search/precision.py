"""--precision in a search: each candidate's precision (a searched choice when several are given), the Target that
measures it, and its int8 quality (nas/training/quantize.py, through the int8 cache).

Without --precision nothing changes: one precision (the backend's own), no trial parameter, files where they always
were. With it, every trial records its precision; a list adds the Optuna parameter ``precision``, so the samplers
choose it like any other choice (the evolution sampler mutates it; its repeat check tells a net's precisions apart).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from nas.target import Target

PARAM = "precision"  # the Optuna parameter of a search over several precisions
# How often the evolution changes a child's precision from its parent's. At the default rate (one over some thirty
# parameters) an 8 ms search over fp32,int8, whose references start in fp32, drew no int8 child in 24 trials on
# either seed (reports/int8.md, "The benches after the fix"), though int8 ABPN and QuickSRNet-M fit where their fp32
# graphs do not.
PRECISION_MUTATION_RATE = 0.3
# A net's latency in each precision relative to fp32, until the study has measured MIN_MEASURED nets of each: the
# 20 random nets' median int8 speed-up on ONNX Runtime's CPU was 2.16x (reports/int8.md, "Shared biases"); fp16 is
# a round guess for a GPU's half-precision kernels. Only the growth of a child whose precision changed reads them.
PRIOR_SPEED = {"fp32": 1.0, "fp16": 0.5, "int8": 0.46}
MIN_MEASURED = 3
Complete = Callable[[dict[str, Any], random.Random], tuple[Hashable, dict[str, Any]]]


def precision_target(target: Target, precision: str) -> Target:
    """``target`` with its backend set to time ``precision`` (the workload's IO dtype follows the backend)."""
    from latency_db.precision import at_precision

    backend, _ = at_precision(target.backend, target.workload, precision)
    return replace(target, backend=backend)


class PrecisionPlan:
    """The precisions of a search and a Target for each."""

    def __init__(self, target: Target) -> None:
        from latency_db.precision import default_precision

        self.given = bool(target.precisions)
        self.precisions = target.precisions or (default_precision(target.backend),)
        self.targets = {p: precision_target(target, p) if self.given else target for p in self.precisions}

    @property
    def searched(self) -> bool:
        return len(self.precisions) > 1

    def choose(self, trial: Any) -> str:
        """The trial's precision: the one given, or the sampler's choice among several."""
        if not self.searched:
            return self.precisions[0]
        return str(trial.suggest_categorical(PARAM, list(self.precisions)))

    def warm(self, params: dict[str, Any]) -> dict[str, Any]:
        """A reference's warm-start parameters: when precision is searched, in the first precision listed, so that
        ``fp32,int8`` starts from the references as ``fp32`` does (left to Optuna, a reference could be enqueued in
        int8 only: QuickSRNet-S then never ran in fp32, reports/int8.md); the samplers try the other precisions."""
        return {**params, PARAM: self.precisions[0]} if self.searched else params

    def mutation_rates(self) -> dict[str, float]:
        """The evolution's mutation rate for the precision parameter (none when precision is not searched)."""
        return {PARAM: PRECISION_MUTATION_RATE} if self.searched else {}

    def evolution(self, space: Any, input_size: tuple[int, int]) -> dict[str, Any]:
        """The evolution sampler's keyword arguments for this search: ``complete`` (a child's network, its precision
        among it), the precision's mutation rate and the latency projection of a child whose precision changed."""
        kwargs: dict[str, Any] = {"complete": self.complete(partial(space.complete, input_size=input_size))}
        if self.searched:
            kwargs |= {"mutation_rates": self.mutation_rates(), "project": SwitchProjection(space, input_size)}
        return kwargs

    def folder(self, precision: str) -> str:
        """The trial's subfolder of archs/<arch_id>/ (RunDirWriter.arch_dir): its precision when --precision was
        given, so that one net's rows in two precisions never overwrite each other."""
        return precision if self.given else ""

    def complete(self, complete: Complete) -> Complete:
        """The evolution sampler's ``complete`` with the precision kept in the parameters and in the network's
        identity (an fp32 and an int8 trial of one net are different candidates)."""
        if not self.searched:
            return complete

        def with_precision(params: dict[str, Any], rng: random.Random) -> tuple[Hashable, dict[str, Any]]:
            precision = params.get(PARAM) or rng.choice(self.precisions)
            network, drawn = complete({k: v for k, v in params.items() if k != PARAM}, rng)
            return (network, precision), {**drawn, PARAM: precision}

        return with_precision


class SwitchProjection:
    """The latency of a child whose precision is not its parent's, projected from the parent's: the study's measured
    nets fitted as log(ms) = c[precision] + slope * log(MACs) (PRIOR_SPEED and slope 1 until it has MIN_MEASURED of
    each precision), so that a net switched to int8 can be grown into the latency the switch frees."""

    def __init__(self, space: Any, input_size: tuple[int, int]) -> None:
        self.space, self.input_size = space, input_size
        self._macs: dict[tuple[tuple[str, str], ...], float] = {}
        # the fit of the last ``measured`` list: the sampler builds one per trial and projects many edits against it
        self._fitted: tuple[list[tuple[dict[str, Any], float]], tuple[dict[str, float], float]] | None = None

    def __call__(self, parent: dict[str, Any], parent_ms: float, child: dict[str, Any],
                 measured: list[tuple[dict[str, Any], float]]) -> float | None:
        if PARAM not in parent or PARAM not in child or parent[PARAM] == child[PARAM]:
            return None
        if self._fitted is None or self._fitted[0] is not measured:
            self._fitted = (measured, self.fit(measured))
        offsets, slope = self._fitted[1]
        ratio = math.log(self.macs(child) / self.macs(parent))
        return parent_ms * math.exp(slope * ratio + offsets[child[PARAM]] - offsets[parent[PARAM]])

    def fit(self, measured: list[tuple[dict[str, Any], float]]) -> tuple[dict[str, float], float]:
        """Per precision, log latency at one MAC; and the slope of log latency in log MACs."""
        prior = {p: math.log(v) for p, v in PRIOR_SPEED.items()}
        rows = [(p[PARAM], math.log(self.macs(p)), math.log(ms)) for p, ms in measured if PARAM in p and ms > 0]
        names = sorted({r[0] for r in rows})
        if len(names) < 2 or any(sum(r[0] == n for r in rows) < MIN_MEASURED for n in names):
            return prior, 1.0
        design = np.array([[float(r[0] == n) for n in names] + [r[1]] for r in rows])
        solution = np.linalg.lstsq(design, np.array([r[2] for r in rows]), rcond=None)[0]
        slope = float(np.clip(solution[-1], 0.3, 1.2))  # a study of few nets of one size can say little of it
        # the offsets at the clipped slope: each precision's mean residual
        offsets = {n: float(np.mean([r[2] - slope * r[1] for r in rows if r[0] == n])) for n in names}
        return prior | offsets, slope

    def macs(self, params: dict[str, Any]) -> float:
        """The multiply-adds of the network a full parameter dict draws (at least one, for the logarithm)."""
        from search_spaces import count

        key = tuple(sorted((k, repr(v)) for k, v in params.items() if k != PARAM))
        if key not in self._macs:
            spec = self.space.complete({k: v for k, v in params.items() if k != PARAM}, random.Random(0),
                                       self.input_size)[0]
            self._macs[key] = float(max(1, count(spec, *self.input_size).macs))
        return self._macs[key]


def int8_quality(spec: Any, result: Any, data: Any, target: Target, engine: Any) -> tuple[Any, Any, bool]:
    """The int8 result of a trained net (cache first): (the TrainResult scored as the int8 net, the Int8Result,
    whether it came from the cache). The TrainResult keeps the float training's curves and stability metrics."""
    from nas.training.int8_cache import Int8Cache
    from nas.training.quantize import int8_key, quantize_trained

    cache = Int8Cache(engine)
    key = (spec.arch_id, int8_key(target.train_config), data.data_id)
    int8 = cache.get(*key)
    cached = int8 is not None
    if int8 is None:
        from latency_db import device_lock

        with device_lock(target.backend):  # no latency is timed meanwhile
            int8 = quantize_trained(spec, result.state_dict, result.psnr_gain_db, data, target.train_config,
                                    target.device)
        cache.put(*key, int8)
    scored = replace(result, psnr_db=int8.psnr_db, bicubic_psnr_db=int8.bicubic_psnr_db, psnr_gain_db=int8.gain_db,
                     ssim=int8.ssim, state_dict=int8.state_dict)
    return scored, int8, cached
