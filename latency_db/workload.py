"""What is measured: the input a network sees at deployment (part of the latency cache key)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

IO_DTYPES = ("fp32", "fp16")
LAYOUTS = ("NCHW",)


@dataclass(frozen=True)
class Workload:
    """One inference call: an (batch, channels, height, width) input, the output ``scale`` and the
    dtype of the graph's inputs and outputs. Frozen and hashable so it can key caches."""

    height: int
    width: int
    scale: int = 1
    batch: int = 1
    channels: int = 3
    io_dtype: str = "fp32"
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        for name in ("height", "width", "scale", "batch", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"workload {name} must be a positive integer, got {value!r}")
        if self.io_dtype not in IO_DTYPES:
            raise ValueError(f"workload io_dtype must be one of {', '.join(IO_DTYPES)}, got {self.io_dtype!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"workload layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.height, self.width)

    @property
    def bytes_per_element(self) -> int:
        return 2 if self.io_dtype == "fp16" else 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workload:
        return cls(**{k: data[k] for k in ("height", "width", "scale", "batch", "channels", "io_dtype", "layout")})
