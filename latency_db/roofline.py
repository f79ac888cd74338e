"""Roofline lower bound of a network on a device: max(FLOPs / peak FLOP/s, bytes / bandwidth).

GPU peaks are dense fp16 tensor-core rates from the vendors' datasheets (docs/latency.md) (for GeForce
cards, the fp16-accumulate rate: the higher one, so the bound stays a lower bound). A CPU's peak
is estimated once per fingerprint by a short probe (fp32 matmul and a large copy) and cached; a
measurement faster than its bound proves the probe low (a busy machine, cache-resident data, a
kernel faster than torch.mm), and raises the stored peak to what that measurement achieved.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from latency_db.fingerprint import digest
from search_spaces import Counts

if TYPE_CHECKING:
    from latency_db.backends import Backend
    from latency_db.store import LatencyStore


@dataclass(frozen=True)
class Peak:
    gflops: float          # peak FLOP/s in GFLOP/s
    bandwidth_gbs: float   # memory bandwidth in GB/s
    source: str            # 'table' or 'probe'


# First match wins: more specific patterns come first. (TFLOP/s dense fp16 tensor, TB/s)
GPU_PEAKS: tuple[tuple[str, float, float], ...] = (
    (r"H100.*PCIe", 756.0, 2.0),
    (r"H100", 989.0, 3.35),              # SXM5 (NVML: "NVIDIA H100 80GB HBM3")
    (r"H200", 989.0, 4.8),
    (r"A100.*80GB", 312.0, 2.039),
    (r"A100", 312.0, 1.555),
    (r"L40S", 362.05, 0.864),
    (r"\bL4\b", 121.0, 0.300),
    (r"RTX 4090", 330.3, 1.008),
    (r"RTX 3090 Ti", 160.0, 1.008),
    (r"RTX 3090", 142.0, 0.936),
)


def gpu_peak(gpu_name: str) -> Peak | None:
    """Table peak for a GPU name as NVML/torch report it; None for a GPU not in the table."""
    for pattern, tflops, tbs in GPU_PEAKS:
        if re.search(pattern, gpu_name, flags=re.IGNORECASE):
            return Peak(gflops=tflops * 1e3, bandwidth_gbs=tbs * 1e3, source="table")
    return None


def probe_cpu(threads: int, seconds: float = 0.25) -> Peak:
    """Best fp32 matmul rate (at least two 2048^2 products) and copy bandwidth seen in about
    2 x ``seconds`` on ``threads`` threads. Under load from other processes it underestimates the
    peak, and the cached roofline is then not a strict lower bound."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = 2048  # large enough for the BLAS kernel to reach its steady rate
        a, b = torch.rand(n, n), torch.rand(n, n)
        best_flops, runs = 0.0, 0
        end = time.perf_counter() + seconds
        while runs < 2 or time.perf_counter() < end:
            runs += 1
            t = time.perf_counter()
            torch.mm(a, b)
            best_flops = max(best_flops, 2 * n**3 / (time.perf_counter() - t))
        src = torch.rand(16 * 2**20)  # 64 MiB: well past the last-level cache
        dst = torch.empty_like(src)
        best_bw = 0.0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            dst.copy_(src)
            best_bw = max(best_bw, 2 * src.numel() * 4 / (time.perf_counter() - t))
    finally:
        torch.set_num_threads(previous)
    return Peak(gflops=best_flops / 1e9, bandwidth_gbs=best_bw / 1e9, source="probe")


def device_peak(backend: Backend, store: LatencyStore) -> Peak | None:
    """The backend device's peak: from the table for a GPU, from the store (or a probe, then stored)
    for a CPU."""
    fp = backend.fingerprint()
    key = fp["key"]
    if key["kind"] == "gpu":
        return gpu_peak(key["gpu_name"])
    device_hash = digest(key)
    cached = store.get_peak(device_hash)
    if cached is not None:
        return Peak(gflops=cached[0], bandwidth_gbs=cached[1], source="probe")
    peak = probe_cpu(int(key["threads"]))
    store.put_peak(device_hash, fp["device"], peak.gflops, peak.bandwidth_gbs)
    return peak


def raise_to_measured(backend: Backend, store: LatencyStore, peak: Peak, counts: Counts, median_ms: float) -> Peak:
    """A probed (CPU) peak raised so that a network measured at ``median_ms`` respects its own bound."""
    if peak.source != "probe" or median_ms <= 0 or roofline_ms(counts, peak) <= median_ms:
        return peak
    raised = Peak(gflops=max(peak.gflops, _rate_within(counts.flops, median_ms)),
                  bandwidth_gbs=max(peak.bandwidth_gbs, _rate_within(counts.bytes_moved, median_ms)), source="probe")
    fp = backend.fingerprint()
    store.raise_peak(digest(fp["key"]), raised.gflops, raised.bandwidth_gbs)
    return raised


def _rate_within(amount: float, median_ms: float) -> float:
    """The smallest rate (giga-units/s) at which ``amount`` takes at most ``median_ms`` in floating point.

    ``amount / (median_ms / 1e3) / 1e9`` is that rate in exact arithmetic only: rounded, the time
    ``roofline_ms`` computes back from it can land one ulp above ``median_ms``, so nudge it up.
    """
    if amount <= 0:
        return 0.0
    rate = amount / (median_ms / 1e3) / 1e9
    while _term_ms(amount, rate) > median_ms:
        rate = math.nextafter(rate, math.inf)
    return rate


def _term_ms(amount: float, rate: float) -> float:
    return 1e3 * (amount / (rate * 1e9))


def roofline_ms(counts: Counts, peak: Peak) -> float:
    return max(_term_ms(counts.flops, peak.gflops), _term_ms(counts.bytes_moved, peak.bandwidth_gbs))
