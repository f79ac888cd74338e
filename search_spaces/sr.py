"""Super-resolution spaces (x2, x3, x4): a residual network over a classical upsampling."""

from __future__ import annotations

from typing import Any

from search_spaces.base import WIDTHS, Chooser, SearchSpace, divisors_allowed, draw_stage, stage_params
from search_spaces.registry import register_space
from search_spaces.spec import ArchSpec, Conv, Level, SpecError, long_skip_fits

MAX_HEAD = 12  # SESR-M11's 12 layers before its output conv


class SRSpace(SearchSpace):
    """Super-resolution by ``scale``.

    Searched: classical base (nearest/bilinear/bicubic: their cost differs per device and is
    measured, not assumed; or none, the net drawing the whole image), RGB or luma-only,
    space-to-depth 1 or 2 at the entry, 1-12 head layers (width 8-64 in steps of 8, kernel 1/3/5
    each), an optional encoder-decoder level with its own body and a tail, additive skips on or
    off, a long skip from the first layer to the output conv, and the output conv's kernel.
    Version 2 added the base 'none', the long skip and 8-12 head layers (SESR, Bicubic++).
    """

    kind = "sr"
    version = 2

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.name = self.task = f"sr{scale}x"

    def draw(self, choose: Chooser, input_size: tuple[int, int] | None) -> ArchSpec:
        upsample = choose.categorical("upsample", ("nearest", "bilinear", "bicubic", "none"))
        # without a base there is nothing to carry the chroma: a net that draws the image draws RGB
        color = "rgb" if upsample == "none" else choose.categorical("color", ("rgb", "luma"))
        s2d = choose.categorical("space_to_depth", divisors_allowed(input_size, (1, 2)))
        head = draw_stage(choose, "head", 1, MAX_HEAD)
        # A level halves the resolution once more: offer it only where the input tiles evenly.
        levels: tuple[Level, ...] = ()
        tail: tuple[Conv, ...] = ()
        if divisors_allowed(input_size, (2 * s2d,)) and choose.categorical(f"level_s2d{s2d}", (False, True)):
            body = draw_stage(choose, "level0_body", 0, 2)
            levels = (Level(width=choose.categorical("level0_width", WIDTHS[1:]), body=body,
                            up_kernel=choose.categorical("level0_up_kernel", (1, 3))),)
            tail = draw_stage(choose, "tail", 0, 2)
        long_skip = long_skip_fits(head, levels, tail) and choose.categorical("long_skip", (False, True))
        return ArchSpec(
            space="sr", scale=self.scale, upsample=upsample, color=color, space_to_depth=s2d,
            head=head, levels=levels, tail=tail,
            skip=choose.categorical("skip", ("none", "add")),
            output_kernel=choose.categorical("output_kernel", (1, 3, 5)),
            long_skip=long_skip,
        )

    def params_of(self, spec: ArchSpec) -> dict[str, Any]:
        self.check(spec)
        params: dict[str, Any] = {"upsample": spec.upsample, "color": spec.color,
                                  "space_to_depth": spec.space_to_depth, **stage_params("head", spec.head),
                                  f"level_s2d{spec.space_to_depth}": bool(spec.levels),
                                  "skip": spec.skip, "output_kernel": spec.output_kernel}
        if spec.upsample == "none":
            del params["color"]  # not drawn: always rgb
        if long_skip_fits(spec.head, spec.levels, spec.tail):
            params["long_skip"] = spec.long_skip
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
        anchor (the input repeated s^2 times before depth-to-space) is, or (Bicubic++) over none;
        warm starts too, where they tile the input (the evolution sampler cuts one just over the budget
        down to fit)."""
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
            # SESR-M5 / M11 (Bhardwaj et al. 2022), collapsed: Y channel minus 0.5, a 5x5/16, M=5 or 11
            # 3x3/16 blocks (each trained as a linear block with a short residual: --reparam linear is
            # that training), the long residual from the first layer's output, a 5x5 to s^2, the input
            # added as the anchor, depth-to-space. Changes: PReLU -> ReLU; the anchor is the nearest
            # base; chroma is the nearest base (the paper evaluates Y only).
            "sesr_m5": self._ref((16, 5), *[(16, 3)] * 5, upsample="nearest", color="luma", long_skip=True,
                                 output_kernel=5),
            "sesr_m11": self._ref((16, 5), *[(16, 3)] * 11, upsample="nearest", color="luma", long_skip=True,
                                  output_kernel=5),
            # Bicubic++ (Bilecen & Ayazoglu 2023): a 3x3 stride-2 conv 3 -> 32, two 3x3/32, the first
            # layer's output added after the third, a 3x3 to 3(2s)^2, depth-to-space 2s, no classical
            # base and no residual. Changes: LeakyReLU(0.1) -> ReLU; the stride-2 3x3 entry -> space-to-
            # depth 2 and a 3x3 conv (a 6x6 stride-2 window that contains the 3x3 one, 4x that layer's
            # MACs; the input must be even in height and width, as the strided conv needs); biases kept.
            "bicubic_pp": self._ref(*[(32, 3)] * 3, upsample="none", long_skip=True, space_to_depth=2),
        }

    def _ref(self, *layers: tuple[int, int], upsample: str = "bilinear", color: str = "rgb",
             long_skip: bool = False, output_kernel: int = 3, space_to_depth: int = 1) -> ArchSpec:
        """A plain stack of conv+ReLU layers and an output conv (3x3 unless told), at this space's scale."""
        return ArchSpec(space="sr", scale=self.scale, upsample=upsample, color=color, space_to_depth=space_to_depth,
                        head=tuple(Conv(width=w, kernel=k) for w, k in layers), output_kernel=output_kernel,
                        long_skip=long_skip)

    def dimensions(self) -> dict[str, str]:
        return {
            "upsample": "nearest | bilinear | bicubic (classical base the net adds to) | none (the net draws it all)",
            "color": "rgb | luma (chroma upsampled classically; rgb without a base)",
            "space_to_depth": "1 | 2 at the entry (where the input size is even)",
            "head": f"1-{MAX_HEAD} conv+ReLU layers, width 8-64 step 8, kernel 1|3|5",
            "level": "optional: strided 2x2 down to 16-64, 0-2 body layers, 1|3 up conv, depth-to-space",
            "tail": "0-2 layers after the level",
            "skip": "none | add (around layers whose width matches their input)",
            "long_skip": "off | on: + the first layer's output before the output conv (where widths match)",
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
