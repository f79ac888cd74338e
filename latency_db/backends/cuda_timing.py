"""trtexec-style GPU timing shared by the TensorRT and torch-cuda backends.

One untimed launch; CUDA graph capture when it works (else plain launches); warm-up for at least
``warmup_s``; then CUDA events around each sample on one stream and a single synchronize at the
end. Nets faster than ~50 us get K launches per sample (the sample is the mean of the K). Host to
device copies are never part of a sample: inputs stay resident on the GPU.

Capture runs in thread-local mode, as trtexec's does (``cudaStreamCaptureModeThreadLocal``,
samples/common/sampleDevice.h): only CUDA calls from this thread can invalidate it. A launch that
fails while being captured must raise (TensorRT's ``execute_async_v3`` only returns False): the
capture is then dropped, plain launches are timed, and the details say so (``cuda_graph`` False,
``cuda_graph_error`` why), so the fallback is visible in the stored row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from latency_db.backends.base import Protocol

GPU_PROTOCOLS = {
    # docs/latency.md, "Timing protocol": warm-up >= 200 ms, then >= 200 samples or >= 3 s,
    # CoV above 2.5 % is unstable.
    "full": Protocol(name="gpu-trtexec-v1", warmup_s=0.2, min_warmup_runs=1, min_runs=200, min_s=3.0,
                     require_both=False, max_s=3.0, max_runs=200, cov_threshold=0.025),
    # Screening: same shape of protocol, a tenth of the samples.
    "fast": Protocol(name="gpu-fast-v1", warmup_s=0.2, min_warmup_runs=1, min_runs=50, min_s=0.5,
                     require_both=False, max_s=0.5, max_runs=50, cov_threshold=0.025),
}

SHORT_LAUNCH_S = 50e-6


def capture_graph(launch: Callable[[], None], stream: Any) -> tuple[Callable[[], None], bool, str | None]:
    """Capture one ``launch`` into a CUDA graph on ``stream``: (graph replay, True, None), or, when
    capture fails (or ``launch`` raises while captured), (``launch`` itself, False, why)."""
    import torch

    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            launch()
    except Exception as exc:  # noqa: BLE001  some kernels cannot be captured: then time plain launches
        torch.cuda.synchronize()
        return launch, False, f"{type(exc).__name__}: {exc}"[:500]
    return graph.replay, True, None


def cuda_event_timing(launch: Callable[[], None], stream: Any,
                      protocol: Protocol) -> tuple[list[float], dict[str, Any]]:
    """Samples in ms of ``launch`` (which must enqueue its work on ``stream``), trtexec-style."""
    import torch

    with torch.cuda.stream(stream):
        launch()  # the untimed run: lazy initialization, deferred allocations
        stream.synchronize()
        run, graphed, why_not = capture_graph(launch, stream)
        start, n = time.perf_counter(), 0
        while n < protocol.min_warmup_runs or time.perf_counter() - start < protocol.warmup_s:
            run()
            n += 1
            if n % 10 == 0 or n < 10:
                stream.synchronize()
        stream.synchronize()
        per_launch = (time.perf_counter() - start) / n
        k = max(1, math.ceil(SHORT_LAUNCH_S / max(per_launch, 1e-7)))
        n_samples = protocol.planned_runs(per_launch * k)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(n_samples)]
        for begin, end in events:
            begin.record(stream)
            for _ in range(k):
                run()
            end.record(stream)
        stream.synchronize()
    samples = [begin.elapsed_time(end) / k for begin, end in events]
    details: dict[str, Any] = {"cuda_graph": graphed, "launches_per_sample": k}
    if why_not is not None:
        details["cuda_graph_error"] = why_not
    return samples, details
