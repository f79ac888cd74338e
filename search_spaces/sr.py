"""Super-resolution spaces (x2, x3, x4): a residual network over a classical upsampling."""

from __future__ import annotations

from typing import Any

from search_spaces.base import WIDTHS, Chooser, SearchSpace, divisors_allowed, draw_stage, stage_params
from search_spaces.registry import register_space
from search_spaces.spec import ArchSpec, Conv, Level, SpecError


class SRSpace(SearchSpace):
    """Super-resolution by ``scale``.

    Searched: classical base (nearest/bilinear/bicubic: their cost differs per device and is
    measured, not assumed), RGB or luma-only, space-to-depth 1 or 2 at the entry, 1-7 head layers
    (width 8-64 in steps of 8, kernel 1/3/5 each), an optional encoder-decoder level with its own
    body and a tail, additive skips on or off, and the output conv's kernel.
    """

    kind = "sr"

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.name = self.task = f"sr{scale}x"

    def draw(self, choose: Chooser, input_size: tuple[int, int] | None) -> ArchSpec:
        upsample = choose.categorical("upsample", ("nearest", "bilinear", "bicubic"))
        color = choose.categorical("color", ("rgb", "luma"))
        s2d = choose.categorical("space_to_depth", divisors_allowed(input_size, (1, 2)))
        head = draw_stage(choose, "head", 1, 7)
        # A level halves the resolution once more: offer it only where the input tiles evenly.
        levels: tuple[Level, ...] = ()
        tail: tuple[Conv, ...] = ()
        if divisors_allowed(input_size, (2 * s2d,)) and choose.categorical(f"level_s2d{s2d}", (False, True)):
            body = draw_stage(choose, "level0_body", 0, 2)
            levels = (Level(width=choose.categorical("level0_width", WIDTHS[1:]), body=body,
                            up_kernel=choose.categorical("level0_up_kernel", (1, 3))),)
            tail = draw_stage(choose, "tail", 0, 2)
        return ArchSpec(
            space="sr", scale=self.scale, upsample=upsample, color=color, space_to_depth=s2d,
            head=head, levels=levels, tail=tail,
            skip=choose.categorical("skip", ("none", "add")),
            output_kernel=choose.categorical("output_kernel", (1, 3, 5)),
        )

    def params_of(self, spec: ArchSpec) -> dict[str, Any]:
        self.check(spec)
        params: dict[str, Any] = {"upsample": spec.upsample, "color": spec.color,
                                  "space_to_depth": spec.space_to_depth, **stage_params("head", spec.head),
                                  f"level_s2d{spec.space_to_depth}": bool(spec.levels),
                                  "skip": spec.skip, "output_kernel": spec.output_kernel}
        if spec.levels:
            if len(spec.levels) > 1:
                raise SpecError(f"the {self.name} space has at most one level; this spec has {len(spec.levels)}")
            level = spec.levels[0]
            params |= {"level0_width": level.width, "level0_up_kernel": level.up_kernel,
                       **stage_params("level0_body", level.body), **stage_params("tail", spec.tail)}
        return params

    def references(self) -> dict[str, ArchSpec]:
        """Classic hand designs adapted to the rules: ReLU, widths in multiples of 8, depth-to-space
        output, residual over a bilinear base (bicubic Resize is slow on some backends). They are
        the search's warm starts."""
        return {
            # ESPCN (Shi et al. 2016): 5x5/64, 3x3/32, 3x3 output to 3s^2, pixel shuffle.
            "espcn": self._ref((64, 5), (32, 3)),
            # FSRCNN (Dong et al. 2016), d=56, s=12->16, m=4; deconv replaced by a depth-to-space output.
            "fsrcnn": self._ref((56, 5), (16, 1), (16, 3), (16, 3), (16, 3), (16, 3), (56, 1)),
            # FSRCNN-s, d=32, s=5->8, m=1.
            "fsrcnn_small": self._ref((32, 5), (8, 1), (8, 3), (32, 1)),
            # Two layers: one 3x3/16 feature layer and the output conv.
            "tiny": self._ref((16, 3)),
        }

    def modern_references(self) -> dict[str, ArchSpec]:
        """Real-time designs of 2021-2023 adapted to the rules, each over the nearest base that their
        anchor (the input repeated s^2 times before depth-to-space) is; not warm starts. SESR
        (Bhardwaj et al. 2022) needs a long feature skip and Bicubic++ (2023) a strided entry without a
        classical base, which the space lacks: they are left out."""
        return {
            # ECBSR-M4C8 / M4C16 (Zhang et al. 2021): Y channel, 3x3/C, M=4 3x3/C blocks, 3x3 to s^2,
            # depth-to-space, residual over the nearest-upsampled input. Changes: PReLU -> ReLU; each
            # edge-oriented block is a plain 3x3 here (train with --reparam ecb to train it as one);
            # chroma is the nearest base (the paper evaluates Y only).
            "ecbsr_m4c8": self._ref(*[(8, 3)] * 5, upsample="nearest", color="luma"),
            "ecbsr_m4c16": self._ref(*[(16, 3)] * 5, upsample="nearest", color="luma"),
            # ABPN (Du et al. 2021): 3x3/28 and four 3x3/28 with ReLU, a 3x3 to 3s^2 with ReLU, a 3x3
            # 3s^2 -> 3s^2, plus the anchor (the input repeated s^2 times), depth-to-space, clip.
            # Changes: 28 -> 32 channels; the ReLU'd 3x3 to 3s^2 channels is dropped (its width, 12
            # or 27 or 48, is not a multiple of 8), the output conv maps 32 -> 3s^2; clip at display.
            "abpn": self._ref(*[(32, 3)] * 5, upsample="nearest"),
            # QuickSRNet-Small / Medium (Berger et al. 2023): 3x3/32 + 2 (Small) or 5 (Medium) 3x3/32
            # with ReLU, 3x3 to 3s^2, anchor (input repeated s^2 times), depth-to-space, clip.
            # Changes: none beyond clipping at display (the nearest base is their anchor).
            "quicksrnet_s": self._ref(*[(32, 3)] * 3, upsample="nearest"),
            "quicksrnet_m": self._ref(*[(32, 3)] * 6, upsample="nearest"),
        }

    def _ref(self, *layers: tuple[int, int], upsample: str = "bilinear", color: str = "rgb") -> ArchSpec:
        """A plain stack of conv+ReLU layers and a 3x3 output conv, at this space's scale."""
        return ArchSpec(space="sr", scale=self.scale, upsample=upsample, color=color, space_to_depth=1,
                        head=tuple(Conv(width=w, kernel=k) for w, k in layers), output_kernel=3)

    def dimensions(self) -> dict[str, str]:
        return {
            "upsample": "nearest | bilinear | bicubic (classical base the net adds to)",
            "color": "rgb | luma (chroma upsampled classically)",
            "space_to_depth": "1 | 2 at the entry (where the input size is even)",
            "head": "1-7 conv+ReLU layers, width 8-64 step 8, kernel 1|3|5",
            "level": "optional: strided 2x2 down to 16-64, 0-2 body layers, 1|3 up conv, depth-to-space",
            "tail": "0-2 layers after the level",
            "skip": "none | add (around layers whose width matches their input)",
            "output_kernel": f"1 | 3 | 5, to 3*{self.scale}^2 channels (x f^2 with space-to-depth), zero-init",
        }


@register_space
def sr2x() -> SRSpace:
    return SRSpace(2)


@register_space
def sr3x() -> SRSpace:
    return SRSpace(3)


@register_space
def sr4x() -> SRSpace:
    return SRSpace(4)
