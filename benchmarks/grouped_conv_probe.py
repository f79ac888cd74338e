"""Do grouped convolutions (XLSR's building block) pay on this backend? Latency per MAC of conv stacks.

XLSR (Ayazoglu 2021) builds its body from "G-blocks": a 3x3 conv in 4 groups, then a 1x1 conv. The
space has no grouped conv; it is worth adding only if a grouped conv turns its MAC saving into time
saved. This times stacks of three conv+ReLU layers at a feature map of the search's CPU input size
(135x240 by default) with the search's own backend and protocol (ONNX Runtime, cpu-fast-v1), each
probe several times in rotating order, and prints the median ms and the GMAC/s of each.

Usage: flock /tmp/nas-cpu-bench.lock python benchmarks/grouped_conv_probe.py [--size 135x240] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from dataclasses import dataclass
from typing import Any

from latency_db import Workload, get_backend
from latency_db.fingerprint import digest
from search_spaces import Counts


@dataclass(frozen=True)
class Stack:
    """``layers`` x (``cin``->``cout`` ``kernel`` x ``kernel`` conv in ``groups`` groups + ReLU), then, when
    ``pointwise``, a 1x1 ``cout``->``cout`` conv + ReLU after each (XLSR's G-block)."""

    cin: int
    cout: int
    kernel: int = 3
    groups: int = 1
    pointwise: bool = False
    layers: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {"probe": "grouped_stack", **self.__dict__}

    @property
    def arch_id(self) -> str:
        return "probe-" + digest(self.to_dict())

    def summary(self) -> str:
        g = f" g{self.groups}" if self.groups > 1 else ""
        pw = f" + 1x1/{self.cout}" if self.pointwise else ""
        return f"{self.layers}x [{self.kernel}x{self.kernel}/{self.cout}{g}{pw}] on {self.cin} channels"

    def macs_per_pixel(self) -> int:
        first = self.cin * self.cout * self.kernel ** 2 // self.groups
        rest = self.cout * self.cout * self.kernel ** 2 // self.groups
        pw = self.cout * self.cout if self.pointwise else 0
        return first + pw + (self.layers - 1) * (rest + pw)

    def build(self) -> Any:
        from torch import nn

        mods: list[nn.Module] = []
        cin = self.cin
        for _ in range(self.layers):
            mods += [nn.Conv2d(cin, self.cout, self.kernel, padding=self.kernel // 2, groups=self.groups), nn.ReLU()]
            if self.pointwise:
                mods += [nn.Conv2d(self.cout, self.cout, 1), nn.ReLU()]
            cin = self.cout
        return nn.Sequential(*mods).eval()

    def count(self, height: int, width: int, batch: int, bytes_per_element: int) -> Counts:
        macs = self.macs_per_pixel() * height * width * batch
        return Counts(macs=macs, params=0, activation_bytes=0, weight_bytes=0)


PROBES = {
    "xlsr_gblock (3x3/32 g4 + 1x1/32)": Stack(32, 32, groups=4, pointwise=True),
    "grouped 3x3/32 g4": Stack(32, 32, groups=4),
    "dense 3x3/32": Stack(32, 32),
    "dense 3x3/16 (= g4's MACs)": Stack(16, 16),
    "dense 3x3/16 + 1x1/16": Stack(16, 16, pointwise=True),
    "dense 1x1/32": Stack(32, 32, kernel=1),
}


def cpu_line() -> str:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor()
    flags = set(fields.get("flags", "").split())
    shown = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    return (f"{fields.get('model name')}, cpu family {fields.get('cpu family')}, model {fields.get('model')}, "
            f"stepping {fields.get('stepping')}; flags {' '.join(shown)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="135x240")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    h, w = map(int, args.size.split("x"))
    backend = get_backend("onnxruntime")
    print(f"# {cpu_line()}; {os.cpu_count()} cpus; onnxruntime {backend.version()}, protocol "
          f"{backend.protocol.name}, {backend.threads} threads; feature map {h}x{w}; load 1m {os.getloadavg()[0]:.2f}")
    names = list(PROBES)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            probe = PROBES[name]
            raw = backend.measure(probe, Workload(height=h, width=w, scale=1, channels=probe.cin, io_dtype="fp32"))
            samples[name].append(statistics.median(raw.samples_ms))
    print(f"\n| probe | MAC per pixel | median ms ({args.rounds} measurements) | spread (max/min) | GMAC/s |")
    print("|---|---|---|---|---|")
    for name in names:
        ms = statistics.median(samples[name])
        gmacs = PROBES[name].macs_per_pixel() * h * w / ms / 1e6
        print(f"| {name} | {PROBES[name].macs_per_pixel()} | {ms:.3f} | {max(samples[name]) / min(samples[name]):.2f} "
              f"| {gmacs:.1f} |")
    print(f"\nload 1m after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
