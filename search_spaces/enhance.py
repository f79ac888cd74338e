"""Enhancement at the same resolution (anti-aliasing, denoising path-traced frames, colour, JPEG repair)
learned from the user's own pairs: the denoise topology, residual over the input itself."""

from __future__ import annotations

from search_spaces.denoise import DenoiseSpace
from search_spaces.registry import register_space


class EnhanceSpace(DenoiseSpace):
    """The denoise space under its own task name: its specs say ``space: denoise`` (the same nets, so the
    latency database answers for both), and ``data_kind`` tells the trainer the inputs come from pairs."""

    def __init__(self) -> None:
        self.name = self.task = "enhance"

    @property
    def data_kind(self) -> str:
        return "enhance"

    def dimensions(self) -> dict[str, str]:
        return super().dimensions() | {"output_kernel": "1 | 3 | 5, zero-init, residual over the input frame"}


@register_space
def enhance() -> EnhanceSpace:
    return EnhanceSpace()
