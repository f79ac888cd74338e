"""Denoising / enhancement at the same resolution: an encoder-decoder residual over the input."""

from __future__ import annotations

from typing import Any

from search_spaces.base import WIDTHS, Chooser, SearchSpace, divisors_allowed, draw_stage, stage_params
from search_spaces.registry import register_space
from search_spaces.spec import ArchSpec, Conv, Level

MAX_HEAD, MAX_TAIL = 3, 2


class DenoiseSpace(SearchSpace):
    """Same resolution in and out: head, 1-2 nested levels (strided 2x2 down, depth-to-space up,
    additive skip), tail, output conv; the result is added to the noisy input."""

    kind = "denoise"
    scale = 1

    def __init__(self) -> None:
        self.name = self.task = "denoise"

    def draw(self, choose: Chooser, input_size: tuple[int, int] | None) -> ArchSpec:
        color = choose.categorical("color", ("rgb", "luma"))
        s2d = choose.categorical("space_to_depth", divisors_allowed(input_size, (1, 2)))
        head = draw_stage(choose, "head", 1, MAX_HEAD)
        # Each level needs the input to halve evenly once more; offer only the depths that tile it.
        depths = [n for n in (0, 1, 2) if divisors_allowed(input_size, (s2d * 2**n,))]
        n_levels = choose.categorical(f"n_levels_s2d{s2d}", depths)
        levels = tuple(
            Level(width=choose.categorical(f"level{i}_width", (*WIDTHS[1:], 96, 128)),
                  body=draw_stage(choose, f"level{i}_body", 0, 2),
                  up_kernel=choose.categorical(f"level{i}_up_kernel", (1, 3)))
            for i in range(n_levels)
        )
        return ArchSpec(
            space="denoise", scale=1, upsample="identity", color=color, space_to_depth=s2d,
            head=head, levels=levels, tail=draw_stage(choose, "tail", 0, MAX_TAIL),
            skip=choose.categorical("skip", ("none", "add")),
            output_kernel=choose.categorical("output_kernel", (1, 3, 5)),
        )

    def params_of(self, spec: ArchSpec) -> dict[str, Any]:
        self.check(spec)
        head, tail = spec.head, spec.tail
        if not spec.levels:  # canonical: one run of layers, all in the head; drawn as a full head, then the tail
            head, tail = (head + tail)[:MAX_HEAD], (head + tail)[MAX_HEAD:]
        params: dict[str, Any] = {"color": spec.color, "space_to_depth": spec.space_to_depth,
                                  **stage_params("head", head),
                                  f"n_levels_s2d{spec.space_to_depth}": len(spec.levels),
                                  **stage_params("tail", tail),
                                  "skip": spec.skip, "output_kernel": spec.output_kernel}
        for i, level in enumerate(spec.levels):
            params |= {f"level{i}_width": level.width, f"level{i}_up_kernel": level.up_kernel,
                       **stage_params(f"level{i}_body", level.body)}
        return params

    def references(self) -> dict[str, ArchSpec]:
        return {
            # A small U-Net-like net: 3x3/16, one level at 32 with a 3x3/32 body, 3x3/16 tail.
            "unet_small": ArchSpec(
                space="denoise", scale=1, upsample="identity", color="rgb", space_to_depth=1,
                head=(Conv(16, 3),), levels=(Level(32, (Conv(32, 3),), 1),), tail=(Conv(16, 3),),
                output_kernel=3,
            ),
        }

    def modern_references(self) -> dict[str, ArchSpec]:
        """A published real-time plain denoiser adapted to the rules; a warm start as the classic ones are."""
        return {
            # FastDVDnet's denoising block (Tassano et al. 2020), one frame: 2x 3x3/32, down to 64 with
            # 2x 3x3/64, down to 128 with 2x 3x3, conv to 4x and depth-to-space up twice, skips
            # added, 3x3/32 and a 3x3 out, residual over the noisy input. Changes: one frame and no
            # noise map in (not 3 frames + map, so the first conv is not grouped); BatchNorm removed;
            # 3x3 stride-2 downs -> 2x2; the two 3x3 convs before each depth-to-space dropped (the
            # space has no convs after an inner level); the level-2 body is 64 wide, not 128 (body
            # widths are at most 64); a ReLU after each skip add (the space's level); up convs 3x3.
            "fastdvdnet_block": ArchSpec(
                space="denoise", scale=1, upsample="identity", color="rgb", space_to_depth=1,
                head=(Conv(32, 3), Conv(32, 3)),
                levels=(Level(64, (Conv(64, 3), Conv(64, 3)), 3), Level(128, (Conv(64, 3), Conv(64, 3)), 3)),
                tail=(Conv(32, 3),), output_kernel=3,
            ),
        }

    def dimensions(self) -> dict[str, str]:
        return {
            "color": "rgb | luma",
            "space_to_depth": "1 | 2 at the entry (where the input size is even)",
            "head": "1-3 conv+ReLU layers, width 8-64 step 8, kernel 1|3|5",
            "levels": "0-2 nested levels (as the input size allows): strided 2x2 down to 16-128, "
                      "0-2 body layers, 1|3 up conv, depth-to-space, additive skip",
            "tail": "0-2 layers",
            "skip": "none | add",
            "output_kernel": "1 | 3 | 5, zero-init, residual over the noisy input",
        }


@register_space
def denoise() -> DenoiseSpace:
    return DenoiseSpace()
