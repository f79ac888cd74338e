"""model.py generated from the spec's plan (search_spaces.plan), and the weights mapped to its names."""
from __future__ import annotations

import textwrap
from typing import Any

import torch

from nas.errors import UsageError
from nas.export.info import (
    ExportInfo,
    fmt_number,
    safe_text,
)
from search_spaces import ArchSpec, build, count
from search_spaces.plan import (
    CONV,
    DEPTH_TO_SPACE,
    LONG_SKIP,
    LUMA,
    MERGE,
    RESIDUAL,
    RESIZE,
    SPACE_TO_DEPTH,
    WHITEN,
    Op,
    plan,
)

# Code for the classical base of each (validated) upsample choice; {s} is the integer scale.
_BASE_CODE = {
    "nearest": 'F.interpolate(x, scale_factor={s}, mode="nearest")',
    "bilinear": 'F.interpolate(x, scale_factor={s}, mode="bilinear", align_corners=False)',
    "bicubic": 'F.interpolate(x, scale_factor={s}, mode="bicubic", align_corners=False)',
}
TASK_TITLE = {"sr": "Super-resolution x{s}", "denoise": "Denoising"}


# ---------------------------------------------------------------------- model.py generation
def _conv_code(op: Op) -> str:
    pad = f", padding={op.kernel // 2}" if op.stride == 1 and op.kernel > 1 else ""
    stride = f", stride={op.stride}" if op.stride > 1 else ""
    return f"nn.Conv2d({op.cin}, {op.cout}, {op.kernel}{stride}{pad})"


def _conv_note(op: Op, spec: ArchSpec) -> str:
    if op.name == "out" and spec.upsample == "none":
        return "output conv, zero weights, bias 0.5: the untrained net is flat gray"
    if op.name == "out":
        return "output conv, zero-init: the untrained net is its base"
    if op.stride > 1:
        return "strided 2x2 conv down + ReLU"
    if not op.relu:
        return "conv up (before depth-to-space)"
    return f"{op.kernel}x{op.kernel} conv + ReLU"


def _res(div: int, mul: int = 1) -> str:
    """Spatial size relative to the input: 'H, W', 'H/2, W/2', '2H, 2W'."""
    if mul == div:
        return "H, W"
    if div == 1:
        return f"{mul}H, {mul}W"
    return f"H/{div}, W/{div}"


class _Code:
    """model.py's layers and forward() lines, one or two per op of the spec's plan (search_spaces.plan)."""

    def __init__(self, spec: ArchSpec) -> None:
        self.spec = spec
        self.lines: list[tuple[str, str]] = []  # (code, shape comment)
        # the plan at a nominal input: only channels and the resolution relative to the input are used
        h, w = spec.size_multiple, spec.size_multiple
        self.ops = plan(spec, h, w)
        self.layers = [op for op in self.ops if op.kind == CONV]
        c, f, s = spec.in_channels, spec.space_to_depth, spec.scale
        for op in self.ops:
            div = f * 2 ** op.level  # resolution divisor of the op's output (feature maps)
            if op.kind == RESIZE:
                self.emit("base = " + _BASE_CODE[spec.upsample].format(s=s), f"(N, 3, {_res(1, s)}) classical result")
            elif op.kind == LUMA:
                self.emit("h = F.conv2d(x, self.luma_weight) - 0.5", "(N, 1, H, W) luma, whitened to [-0.5, 0.5]")
            elif op.kind == WHITEN and spec.color == "rgb":
                self.emit("h = x - 0.5", "(N, 3, H, W) whitened to [-0.5, 0.5]")
            elif op.kind == SPACE_TO_DEPTH:
                self.emit(f"h = F.pixel_unshuffle(h, {f})", f"(N, {c * f * f}, {_res(f)}) space-to-depth")
            elif op.kind == CONV:
                self._conv(op, div)
            elif op.kind == MERGE:
                self.emit(f"h = F.relu(skip{op.level} + F.pixel_shuffle(self.up{op.level}(h), 2))",
                          f"(N, {op.cout}, {_res(f * 2 ** (op.level - 1))})")
            elif op.kind == LONG_SKIP:
                self.emit("h = h + first", f"(N, {op.cout}, {_res(div)}) long skip: + head1's output")
            elif op.kind == DEPTH_TO_SPACE and spec.upsample == "none":
                self.emit(f"return F.pixel_shuffle(r, {s * f})", f"(N, 3, {_res(1, s)}) the image (no classical base)")
            elif op.kind == DEPTH_TO_SPACE:
                self.emit(f"r = F.pixel_shuffle(r, {s * f})", f"(N, {c}, {_res(1, s)}) residual, depth-to-space")
            elif op.kind == RESIDUAL:
                luma = " luma residual on R, G and B" if c == 1 else ""
                if spec.space == "sr":
                    self.emit("return base + r", f"(N, 3, {_res(1, s)})" + luma)
                else:
                    self.emit("return x + r", "(N, 3, H, W)" + luma)

    def emit(self, code: str, comment: str = "") -> None:
        self.lines.append((code, comment))

    def _conv(self, op: Op, div: int) -> None:
        n = op.level
        if op.name == "out":
            self.emit("r = self.out(h)", f"(N, {op.cout}, {_res(div)})")
        elif op.stride > 1:
            cin = op.cin
            self.emit(f"# level {n}: strided 2x2 conv down, body at half resolution,")
            self.emit(f"# conv up to 4x{cin} channels, depth-to-space, add the skip, ReLU")
            self.emit(f"skip{n} = h", f"(N, {cin}, {_res(div // 2)})")
            self.emit(f"h = F.relu(self.{op.name}(h))", f"(N, {op.cout}, {_res(div)})")
        elif not op.relu:
            pass  # the up conv: applied inside the level's merge line
        elif op.residual:
            self.emit(f"h = h + F.relu(self.{op.name}(h))", f"(N, {op.cout}, {_res(div)}) additive skip")
        else:
            self.emit(f"h = F.relu(self.{op.name}(h))", f"(N, {op.cout}, {_res(div)})")
        if op.name == "head1" and self.spec.long_skip:
            self.emit("first = h", "kept for the long skip before the output conv")


def numbers_doc(spec: ArchSpec, info: ExportInfo) -> list[str]:
    h, w = info.input_size
    counts = count(spec, h, w)
    lat = f"{fmt_number(info.latency_ms, unit=' ms')} median, {fmt_number(info.latency_p90_ms, unit=' ms')} p90"
    gain = fmt_number(info.psnr_gain_db, "+.3f", " dB")
    base = "bicubic upscaling" if spec.space == "sr" else "the noisy input"
    return [
        f"arch_id      {spec.arch_id}",
        f"latency      {lat} for a 1x3x{h}x{w} input",
        f"measured on  {info.device} ({info.backend})",
        f"quality      {gain} PSNR over {base} after the search's training",
        f"size         {counts.params:,} parameters, {counts.macs / 1e9:.3f} GMAC per {h}x{w} frame",
    ]


def model_source(spec: ArchSpec, info: ExportInfo) -> str:
    """The text of model.py for ``spec`` (generated from validated fields and formatted numbers only)."""
    code = _Code(spec)
    s, m = spec.scale, spec.size_multiple
    cls = f"SR{s}xNet" if spec.space == "sr" else "DenoiseNet"
    out_shape = f"(N, 3, {_res(1, s)})"
    arch = textwrap.wrap(spec.summary(), 92, break_on_hyphens=False)
    doc = [
        f'"""{TASK_TITLE[spec.space].format(s=s)} network found by nas (hardware-aware architecture search).',
        "",
        *numbers_doc(spec, info),
        "architecture " + arch[0],
        *("             " + line for line in arch[1:]),
        "",
        f"Input: RGB in [0, 1], (N, 3, H, W), H and W multiples of {m}. Output: RGB {out_shape},",
        "about [0, 1]: clamp before display. Needs only PyTorch (safetensors optional).",
        "Generated by `nas export` from arch.json; edit freely.",
        '"""',
    ]
    init = [f"        self.{op.name} = {_conv_code(op)}  # {_conv_note(op, spec)}" for op in code.layers]
    what = "the whole image, learned (no classical base)" if spec.upsample == "none" else \
        "a classical result plus a learned residual"
    out_init = ["        nn.init.constant_(self.out.bias, 0.5)  # no base: start flat gray"] \
        if spec.upsample == "none" else []
    fwd = []
    for line, comment in code.lines:
        if line.startswith("#"):
            fwd.append(f"        {line}")
        else:
            fwd.append(f"        {line}" + (f"  # {comment}" if comment else ""))
    luma = []
    if spec.color == "luma":
        luma = [
            "        # BT.601 luma as a fixed 1x1 conv (not trained, not saved): the network sees luma only",
            "        self.register_buffer(",
            '            "luma_weight", torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1), persistent=False',
            "        )",
        ]
    parts = [
        *doc,
        "",
        "from __future__ import annotations",
        "",
        "import os",
        "from pathlib import Path",
        "",
        "import torch",
        "import torch.nn.functional as F",
        "from torch import nn",
        "",
        f'ARCH_ID = "{spec.arch_id}"',
        f'TASK = "{spec.space}"',
        f"SCALE = {s}",
        f"SIZE_MULTIPLE = {m}  # input height and width must be multiples of this",
        f"INPUT_SIZE = ({info.input_size[0]}, {info.input_size[1]})  # (H, W) the latency was measured at",
        'WEIGHTS = Path(__file__).with_name("model.safetensors")',
        *(["LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # BT.601"] if spec.color == "luma" else []),
        "",
        "",
        f"class {cls}(nn.Module):",
        f'    """(N, 3, H, W) RGB in [0, 1] -> {out_shape}: {what}."""',
        "",
        "    def __init__(self) -> None:",
        "        super().__init__()",
        *luma,
        *init,
        "        self.reset_parameters()",
        "",
        "    def reset_parameters(self) -> None:",
        '        """He init keeps ReLUs alive; the zero output conv makes the untrained net its base."""',
        "        for module in self.modules():",
        "            if isinstance(module, nn.Conv2d):",
        '                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")',
        "                nn.init.zeros_(module.bias)",
        "        nn.init.zeros_(self.out.weight)",
        *out_init,
        "",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        *fwd,
        "",
        "",
        f"def build_model() -> {cls}:",
        '    """A freshly initialized network (load trained weights with ``load_weights``)."""',
        f"    return {cls}()",
        "",
        "",
        "def read_state_dict(path: str | os.PathLike[str] = WEIGHTS) -> dict[str, torch.Tensor]:",
        '    """Weights from a .safetensors file, or from a .pt file with ``torch.load(weights_only=True)``',
        "    (never unpickles code). Without the safetensors package, a .safetensors path falls back to",
        "    the .pt file next to it; a train.py checkpoint (last.pt) gives its model weights.\"\"\"",
        "    path = Path(path)",
        '    if path.suffix == ".safetensors":',
        "        try:",
        "            from safetensors.torch import load_file",
        "        except ImportError:",
        '            if not path.with_suffix(".pt").exists():',
        "                raise ImportError(",
        '                    f"reading {path} needs the safetensors package: pip install safetensors"',
        "                ) from None",
        '            path = path.with_suffix(".pt")',
        "        else:",
        "            return load_file(str(path))",
        '    state = torch.load(path, map_location="cpu", weights_only=True)',
        '    return state.get("model", state)',
        "",
        "",
        "def load_weights(model: nn.Module, path: str | os.PathLike[str] = WEIGHTS) -> nn.Module:",
        '    """Load weights into ``model`` (every key must match) and return it."""',
        "    model.load_state_dict(read_state_dict(path), strict=True)",
        "    return model",
        "",
    ]
    return "\n".join(parts)


def map_state_dict(spec: ArchSpec, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SearchedNet's state_dict (``head.convs.0.weight``, ``levels.inner.up.bias``, ...) under the
    generated module's keys (``head1.weight``, ``up2.bias``, ...); the fixed luma buffer is dropped.
    ``state_dict`` must already be checked with ``check_state_dict``."""
    out: dict[str, torch.Tensor] = {}
    for op in _Code(spec).layers:
        for kind in ("weight", "bias"):
            out[f"{op.name}.{kind}"] = state_dict[f"{op.source}.{kind}"]
    return out


def check_state_dict(spec: ArchSpec, state_dict: Any, where: str) -> dict[str, torch.Tensor]:
    """The weights of ``build(spec)`` as fp32 CPU tensors; UsageError naming the first bad key."""
    expected = build(spec).state_dict()
    if not isinstance(state_dict, dict):
        raise UsageError(f"{where}: weights must be a mapping of tensor names to tensors")
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected), key=str)
    if missing or extra:
        what = f"lacks '{missing[0]}'" if missing else f"holds an unknown tensor '{safe_text(extra[0])}'"
        raise UsageError(f"{where}: the weights do not fit arch {spec.arch_id[:12]}: it {what}")
    checked = {}
    for key, ref in expected.items():
        value = state_dict[key]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.shape != ref.shape:
            raise UsageError(f"{where}: tensor '{key}' must be a float tensor of shape {tuple(ref.shape)}")
        value = value.detach().to("cpu", torch.float32).contiguous()
        if not torch.isfinite(value).all():
            raise UsageError(f"{where}: tensor '{key}' holds NaN or infinity (the training diverged)")
        if key == "luma.weight" and not torch.equal(value, ref):
            raise UsageError(f"{where}: tensor '{key}' is the fixed BT.601 luma transform and must not change")
        checked[key] = value
    return checked
