"""``nas export``: a searched network as plain code that needs only PyTorch.

``export_spec`` writes one folder: ``model.py`` (one readable ``nn.Module`` generated from the spec,
layers spelled out, shapes in comments), ``train.py`` (a standalone full training script),
``arch.json``, the short-trained weights (``model.safetensors`` and a ``weights_only``-loadable
``model.pt``), ``model.onnx`` (fp16 graph, fp16 weights, inputs and outputs: what TensorRT's strong
typing needs), ``model_fp32.onnx``, ``README.md`` and ``export.json`` (what was written, from what).
``export_run`` picks a trial of a run dir (see docs/run_dir.md) and exports it.

The generated code is built only from a validated ArchSpec (integers from fixed ranges, strings
from fixed choices looked up in tables here) and from numbers formatted as floats; free text such as
a device name is stripped to [A-Za-z0-9 ._-]. Nothing a user wrote is pasted into code. The folder
is written next to the target and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import tempfile
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nas import reparam
from nas.errors import NasError, UsageError
from nas.reparam import KINDS as REPARAM_KINDS
from search_spaces import ArchSpec, Conv, Level, SpecError, build, count, export_onnx, load_spec

EXPORT_FORMAT = 1
MANIFEST = "export.json"
EXPORT_FILES = ("model.py", "train.py", "reparam.py", "arch.json", "model.safetensors", "model.pt", "model.onnx",
                "model_fp32.onnx", "README.md", MANIFEST)
DEFAULT_INPUT_SIZE = (135, 240)
TEMPLATES = Path(__file__).with_name("export_templates")
_ARCH_ID = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._-]")
# Code for the classical base of each (validated) upsample choice; {s} is the integer scale.
_BASE_CODE = {
    "nearest": 'F.interpolate(x, scale_factor={s}, mode="nearest")',
    "bilinear": 'F.interpolate(x, scale_factor={s}, mode="bilinear", align_corners=False)',
    "bicubic": 'F.interpolate(x, scale_factor={s}, mode="bicubic", align_corners=False)',
}
_LOSS_TERMS = ("l1", "mse", "charbonnier", "hfen")
_TASK_TITLE = {"sr": "Super-resolution x{s}", "denoise": "Denoising"}


# ---------------------------------------------------------------------- safe values
def safe_text(value: Any, limit: int = 80) -> str:
    """Free text (a device or backend name) reduced to [A-Za-z0-9 ._-], one line, at most ``limit``."""
    text = " ".join(_UNSAFE.sub(" ", str(value)).split())[:limit].strip()
    return text or "unknown"


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, empty, text, NaN, bool)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: Any, spec: str = ".3f", unit: str = "") -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:{spec}}{unit}"


def _int_in(value: Any, low: int, high: int, default: int) -> int:
    number = _number(value)
    if number is None or number != int(number) or not low <= number <= high:
        return default
    return int(number)


def canonical_loss(text: Any) -> str | None:
    """The loss string in canonical form (``l1+hfen:0.1``) when it parses, else None."""
    if not isinstance(text, str) or not text.strip():
        return None
    terms: list[str] = []
    for part in text.replace(" ", "").lower().split("+"):
        name, sep, weight_text = part.partition(":")
        if name not in _LOSS_TERMS or any(t.split(":")[0] == name for t in terms):
            return None
        weight = _number(weight_text) if sep else 1.0
        if weight is None or weight <= 0:
            return None
        terms.append(_LOSS_TERMS[_LOSS_TERMS.index(name)] + ("" if weight == 1.0 else f":{weight:g}"))
    return "+".join(terms)


@dataclass(frozen=True)
class ExportInfo:
    """The numbers and names that go into the generated files, every one checked or sanitized."""

    arch_id: str
    input_size: tuple[int, int]
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    psnr_db: float | None = None
    psnr_gain_db: float | None = None
    budget_ms: float | None = None
    device: str = "unknown"
    backend: str = "unknown"
    trial: int | None = None
    loss: str = "l1"
    loss_note: str = ""
    train: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, spec: ArchSpec, info: dict[str, Any]) -> ExportInfo:
        """Check ``info`` (arch_id, input_size, latency_ms, latency_p90_ms, psnr_db, psnr_gain_db,
        budget_ms, device, backend, trial, train_config): raise UsageError for what contradicts the
        spec, keep what is well-formed, drop the rest."""
        arch_id = info.get("arch_id", spec.arch_id)
        if arch_id != spec.arch_id:
            raise UsageError(f"info arch_id {safe_text(arch_id, 70)} is not the spec's arch_id {spec.arch_id}")
        input_size = _input_size(spec, info.get("input_size"))
        raw_train = info.get("train_config")
        tc = raw_train if isinstance(raw_train, dict) else {}
        loss = canonical_loss(tc.get("loss", info.get("loss", "l1")))
        note = "" if loss is not None else "the search's loss is not one train.py knows; it defaults to l1"
        sigma = _number(tc.get("noise_sigma"))
        lr = _number(tc.get("lr"))
        train = {
            "steps": _int_in(tc.get("steps"), 1, 10**9, 0),
            "batch_size": _int_in(tc.get("batch_size"), 1, 4096, 16),
            "patch_size": _int_in(tc.get("patch_size"), 8, 4096, 48),
            "lr": lr if lr is not None and 0 < lr < 1 else 2e-3,
            "warmup_steps": _int_in(tc.get("warmup_steps"), 0, 10**9, 20),
            "lr_fan_in": _int_in(tc.get("lr_fan_in"), 0, 10**6, 0),  # absent: a search from before it existed
            "noise_sigma": sigma if sigma is not None and 0 <= sigma <= 255 else 25.0,
            "rotate": tc.get("rotate") is True,
            "reparam": tc.get("reparam") if tc.get("reparam") in REPARAM_KINDS else "none",
        }
        patch = train["patch_size"]
        train["patch_size"] = max(spec.size_multiple, patch // spec.size_multiple * spec.size_multiple)
        trial = info.get("trial")
        return cls(
            arch_id=spec.arch_id, input_size=input_size,
            latency_ms=_number(info.get("latency_ms")), latency_p90_ms=_number(info.get("latency_p90_ms")),
            psnr_db=_number(info.get("psnr_db")), psnr_gain_db=_number(info.get("psnr_gain_db")),
            budget_ms=_number(info.get("budget_ms")),
            device=safe_text(info.get("device", "unknown")), backend=safe_text(info.get("backend", "unknown"), 40),
            trial=trial if isinstance(trial, int) and not isinstance(trial, bool) and trial >= 0 else None,
            loss=loss or "l1", loss_note=note, train=train,
        )


def _input_size(spec: ArchSpec, value: Any) -> tuple[int, int]:
    """(H, W) of the low-resolution input the ONNX graphs are exported for."""
    m = spec.size_multiple
    if value is None:
        return tuple(max(m, v // m * m) for v in DEFAULT_INPUT_SIZE)  # type: ignore[return-value]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 16384 for v in value)):
        raise UsageError(f"input_size must be [height, width] in pixels, got {safe_text(value)}")
    if value[0] % m or value[1] % m:
        raise UsageError(f"input size {value[0]}x{value[1]} is not a multiple of {m}, which this spec needs")
    return int(value[0]), int(value[1])


# ---------------------------------------------------------------------- model.py generation
@dataclass(frozen=True)
class _Layer:
    """One conv of the generated module: its attribute, SearchedNet's key prefix, and geometry."""

    name: str
    source: str
    cin: int
    cout: int
    kernel: int
    stride: int = 1
    note: str = ""

    def code(self) -> str:
        pad = f", padding={self.kernel // 2}" if self.stride == 1 and self.kernel > 1 else ""
        stride = f", stride={self.stride}" if self.stride > 1 else ""
        return f"nn.Conv2d({self.cin}, {self.cout}, {self.kernel}{stride}{pad})"


def _res(div: int, mul: int = 1) -> str:
    """Spatial size relative to the input: 'H, W', 'H/2, W/2', '2H, 2W'."""
    if mul == div:
        return "H, W"
    if div == 1:
        return f"{mul}H, {mul}W"
    return f"H/{div}, W/{div}"


class _Plan:
    """Walks a spec once, in SearchedNet's order, collecting layers and forward() lines."""

    def __init__(self, spec: ArchSpec) -> None:
        self.spec = spec
        self.layers: list[_Layer] = []
        self.lines: list[tuple[str, str]] = []  # (code, shape comment)
        c, f, s = spec.in_channels, spec.space_to_depth, spec.scale
        if spec.space == "sr":
            self.emit("base = " + _BASE_CODE[spec.upsample].format(s=s), f"(N, 3, {_res(1, s)}) classical result")
        if spec.color == "luma":
            self.emit("h = F.conv2d(x, self.luma_weight) - 0.5", "(N, 1, H, W) luma, whitened to [-0.5, 0.5]")
        else:
            self.emit("h = x - 0.5", "(N, 3, H, W) whitened to [-0.5, 0.5]")
        if f > 1:
            self.emit(f"h = F.pixel_unshuffle(h, {f})", f"(N, {c * f * f}, {_res(f)}) space-to-depth")
        width = self.stage("head", "head.convs", spec.head, c * f * f, f)
        if spec.levels:
            self.level(0, "levels", width, f)
        width = self.stage("tail", "tail.convs", spec.tail, width, f)
        out_ch = c * (s * f) ** 2
        self.layers.append(_Layer("out", "out", width, out_ch, spec.output_kernel,
                                  note="output conv, zero-init: the untrained net is its base"))
        self.emit("r = self.out(h)", f"(N, {out_ch}, {_res(f)})")
        if s * f > 1:
            self.emit(f"r = F.pixel_shuffle(r, {s * f})", f"(N, {c}, {_res(1, s)}) residual, depth-to-space")
        if spec.space == "sr":
            self.emit("return base + r", f"(N, 3, {_res(1, s)})" + (" luma residual on R, G and B" if c == 1 else ""))
        else:
            self.emit("return x + r", "(N, 3, H, W)" + (" luma residual on R, G and B" if c == 1 else ""))

    def emit(self, code: str, comment: str = "") -> None:
        self.lines.append((code, comment))

    def stage(self, prefix: str, source: str, layers: tuple[Conv, ...], cin: int, div: int) -> int:
        for i, conv in enumerate(layers):
            name = f"{prefix}{i + 1}"
            residual = self.spec.skip == "add" and cin == conv.width
            self.layers.append(_Layer(name, f"{source}.{i}", cin, conv.width, conv.kernel,
                                      note=f"{conv.kernel}x{conv.kernel} conv + ReLU"))
            if residual:
                self.emit(f"h = h + F.relu(self.{name}(h))", f"(N, {conv.width}, {_res(div)}) additive skip")
            else:
                self.emit(f"h = F.relu(self.{name}(h))", f"(N, {conv.width}, {_res(div)})")
            cin = conv.width
        return cin

    def level(self, i: int, source: str, cin: int, div: int) -> None:
        lv: Level = self.spec.levels[i]
        n = i + 1
        self.emit(f"# level {n}: strided 2x2 conv down, body at half resolution,")
        self.emit(f"# conv up to 4x{cin} channels, depth-to-space, add the skip, ReLU")
        self.emit(f"skip{n} = h", f"(N, {cin}, {_res(div)})")
        self.layers.append(_Layer(f"down{n}", f"{source}.down", cin, lv.width, 2, stride=2,
                                  note="strided 2x2 conv down + ReLU"))
        self.emit(f"h = F.relu(self.down{n}(h))", f"(N, {lv.width}, {_res(2 * div)})")
        width = self.stage(f"body{n}_", f"{source}.body.convs", lv.body, lv.width, 2 * div)
        if i + 1 < len(self.spec.levels):
            self.level(i + 1, f"{source}.inner", width, 2 * div)
        self.layers.append(_Layer(f"up{n}", f"{source}.up", width, 4 * cin, lv.up_kernel,
                                  note="conv up (before depth-to-space)"))
        self.emit(f"h = F.relu(skip{n} + F.pixel_shuffle(self.up{n}(h), 2))", f"(N, {cin}, {_res(div)})")


def _numbers_doc(spec: ArchSpec, info: ExportInfo) -> list[str]:
    h, w = info.input_size
    counts = count(spec, h, w)
    lat = f"{_fmt(info.latency_ms, unit=' ms')} median, {_fmt(info.latency_p90_ms, unit=' ms')} p90"
    gain = _fmt(info.psnr_gain_db, "+.3f", " dB")
    base = "bicubic upscaling" if spec.space == "sr" else "the noisy input"
    return [
        f"arch_id      {spec.arch_id}",
        f"latency      {lat} for a 1x3x{h}x{w} input",
        f"measured on  {info.device} ({info.backend})",
        f"quality      {gain} PSNR over {base} after the search's short training",
        f"size         {counts.params:,} parameters, {counts.macs / 1e9:.3f} GMAC per {h}x{w} frame",
    ]


def model_source(spec: ArchSpec, info: ExportInfo) -> str:
    """The text of model.py for ``spec`` (generated from validated fields and formatted numbers only)."""
    plan = _Plan(spec)
    s, m = spec.scale, spec.size_multiple
    cls = f"SR{s}xNet" if spec.space == "sr" else "DenoiseNet"
    out_shape = f"(N, 3, {_res(1, s)})"
    arch = textwrap.wrap(spec.summary(), 92, break_on_hyphens=False)
    doc = [
        f'"""{_TASK_TITLE[spec.space].format(s=s)} network found by nas (hardware-aware architecture search).',
        "",
        *_numbers_doc(spec, info),
        "architecture " + arch[0],
        *("             " + line for line in arch[1:]),
        "",
        f"Input: RGB in [0, 1], (N, 3, H, W), H and W multiples of {m}. Output: RGB {out_shape},",
        "about [0, 1]: clamp before display. Needs only PyTorch (safetensors optional).",
        "Generated by `nas export` from arch.json; edit freely.",
        '"""',
    ]
    init = []
    for layer in plan.layers:
        init.append(f"        self.{layer.name} = {layer.code()}  # {layer.note}")
    fwd = []
    for code, comment in plan.lines:
        if code.startswith("#"):
            fwd.append(f"        {code}")
        else:
            fwd.append(f"        {code}" + (f"  # {comment}" if comment else ""))
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
        f'    """(N, 3, H, W) RGB in [0, 1] -> {out_shape}: a classical result plus a learned residual."""',
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
    for layer in _Plan(spec).layers:
        for kind in ("weight", "bias"):
            out[f"{layer.name}.{kind}"] = state_dict[f"{layer.source}.{kind}"]
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


# ---------------------------------------------------------------------- train.py and README.md
def train_source(spec: ArchSpec, info: ExportInfo) -> str:
    """train.py: the shipped template with the settings block set from the search's train config."""
    text = (TEMPLATES / "train.py").read_text(encoding="utf-8")
    begin = "# --- settings from the search (nas export writes this block) ---\n"
    end = "# --- end of settings ---\n"
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    t = info.train
    settings = (
        f'LOSS = "{info.loss}"\n'
        f"NOISE_SIGMA = {float(t['noise_sigma'])!r}  # 8-bit levels (denoising)\n"
        f"PATCH = {int(t['patch_size'])}  # input patch side\n"
        f"BATCH = {int(t['batch_size'])}\n"
        f"LR = {float(t['lr'])!r}\n"
        f"WARMUP = {int(t['warmup_steps'])}\n"
        f"LR_FAN_IN = {int(t['lr_fan_in'])}  # conv weights with a larger fan-in train at LR * sqrt(LR_FAN_IN / fan-in)\n"
        f"ROTATE = {bool(t['rotate'])}\n"
        f'REPARAM = "{t["reparam"]}"  # each conv trains as this re-parameterized block (reparam.py); '
        "weights are saved collapsed\n"
    )
    return head + begin + settings + end + tail


def readme_source(spec: ArchSpec, info: ExportInfo) -> str:
    """README.md: the numbers, how to use and train the network, how to build and time a TensorRT engine."""
    h, w = info.input_size
    s = spec.scale
    title = _TASK_TITLE[spec.space].format(s=s)
    oh, ow = h * s, w * s
    trial = f"trial {info.trial} of a `nas search`" if info.trial is not None else "a network"
    budget = f" (budget {_fmt(info.budget_ms, unit=' ms')})" if info.budget_ms is not None else ""
    steps = info.train["steps"]
    short = f"{steps} steps" if steps else "a short run"
    loss_note = f"\nNote: {info.loss_note}.\n" if info.loss_note else ""
    numbers = "\n".join(f"    {line}" for line in _numbers_doc(spec, info))
    return f"""# {title} network `{spec.arch_id[:12]}`

{trial.capitalize()}{budget}, exported with `nas export`.

{numbers}
    architecture {spec.summary()}

The latency is the untrained network's (speed does not depend on the weights), measured by the search
on the device above. The quality gain is after the search's short training ({short}, loss `{info.loss}`):
a full training (below) should gain more.

## Files

- `model.py`: the network as one plain `nn.Module` (needs only PyTorch), `build_model()`, `load_weights()`
- `model.safetensors`, `model.pt`: the short-trained weights (the `.pt` loads with `weights_only=True`)
- `arch.json`: the architecture spec the search measured (`nas latency arch.json` re-measures it)
- `model.onnx`: fp16 graph (fp16 weights, input and output) for a 1x3x{h}x{w} input, ready for TensorRT
- `model_fp32.onnx`: the same graph in fp32 (ONNX Runtime, checks)
- `train.py`: full training; `export.json`: what was exported, from which run

## Use

```python
import torch
from model import build_model, load_weights

net = load_weights(build_model()).eval()
with torch.no_grad():
    y = net(torch.rand(1, 3, {h}, {w})).clamp(0, 1)  # RGB in [0, 1] -> (1, 3, {oh}, {ow})
```

Input height and width must be multiples of {spec.size_multiple}.

## Train

```bash
pip install torch numpy pillow safetensors onnx
python train.py --data frames/ --out runs/full            # the last 10% of frames/ validate
python train.py --data frames/ --val-data val/ --steps 200000 --device cuda:0
python train.py --data frames/ --out runs/full --resume   # continue from runs/full/last.pt
```

Same degradation as the search ({"antialiased bicubic downscale by " + str(s) + ", rounded to 8 bits"
if spec.space == "sr" else "Gaussian noise of " + _fmt(info.train["noise_sigma"], ".1f") + " 8-bit levels, clipped"}),
same loss (`{info.loss}`), Adam with a linear warm-up then cosine decay, random {info.train["patch_size"]}x{info.train["patch_size"]}
input patches with flips, starting from the short-trained weights (`--scratch` for a fresh start).
It validates PSNR against {"bicubic upscaling" if spec.space == "sr" else "the noisy input"} every `--val-every`
steps, keeps `best.safetensors` and a resumable `last.pt`, and writes `model.onnx` (fp16) and
`model_fp32.onnx` at the end. `python train.py --help` lists every option.
{loss_note}
## TensorRT

`model.onnx` is strongly typed: its weights, input and output are fp16 in the graph itself, so no
precision flag is needed (TensorRT 11 has none: `--fp16` was removed).

```bash
# TensorRT 11: every network is strongly typed
trtexec --onnx=model.onnx --saveEngine=model.engine
# TensorRT 10.x: ask for strong typing (weak typing is deprecated since 10.12)
trtexec --onnx=model.onnx --saveEngine=model.engine --stronglyTyped
```

Measure the engine with an explicit protocol (trtexec 11 changed its defaults, so state every flag):
one CUDA graph per inference, no host/device copies, spin-wait, a 500 ms warm-up, then at least
3 s and 200 inferences:

```bash
trtexec --loadEngine=model.engine --useCudaGraph --noDataTransfers --useSpinWait \\
        --warmUp=500 --duration=3 --iterations=200 --percentile=90,99
```

Read the `GPU Compute Time` line: its median and p90 compare with the numbers above when the
device, the input size (1x3x{h}x{w}) and the precision are the same. Do not build or train on the
GPU while timing on it, and keep the clocks as they are.
"""


# ---------------------------------------------------------------------- writing
def _load_generated(path: Path) -> Any:
    """Import the generated model.py from ``path`` under a private module name."""
    module_spec = importlib.util.spec_from_file_location(f"_nas_export_{uuid.uuid4().hex}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _self_check(spec: ArchSpec, weights: dict[str, torch.Tensor], mapped: dict[str, torch.Tensor],
                model_py: Path) -> torch.nn.Module:
    """Build the generated module, load the mapped weights and check it computes what the searched
    model computes; returns the loaded module (for the ONNX export)."""
    net = _load_generated(model_py).build_model().eval()
    net.load_state_dict(mapped, strict=True)
    ref = build(spec)
    ref.load_state_dict(weights, strict=True)
    m = spec.size_multiple
    x = torch.rand(1, 3, 2 * m, 3 * m, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((net(x) - ref(x)).abs().max())
    if not diff <= 1e-5:
        raise NasError(f"internal error: the generated model.py differs from the searched model by {diff:g}")
    return net


def _manifest_matches(path: Path, arch_id: str | None) -> bool:
    """True when ``path`` holds exactly a previous export's files, unchanged (of ``arch_id`` unless None)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        names = sorted(p.name for p in path.iterdir())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT or names != sorted(EXPORT_FILES):
        return False
    if arch_id is not None and manifest.get("arch_id") != arch_id:
        return False
    hashes = manifest.get("files")
    return isinstance(hashes, dict) and all(
        hashes.get(name) == _sha256(path / name) for name in EXPORT_FILES if name != MANIFEST
    )


def _check_target(out_dir: Path, arch_id: str, replace: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file: pass a folder path")
    if (out_dir.is_dir() and any(out_dir.iterdir())
            and not _manifest_matches(out_dir, None if replace else arch_id)):
        raise UsageError(
            f"--out {out_dir} exists and is not empty (nor an untouched export of this architecture): "
            "nas export never overwrites; remove it or choose another --out"
        )


def _chmod_like_umask(folder: Path) -> None:
    """mkdtemp makes a private (0700) folder; give the export ordinary permissions instead."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_spec(spec: ArchSpec, state_dict: dict[str, torch.Tensor], out_dir: Path, info: dict[str, Any],
                *, replace: bool = False) -> Path:
    """Write the export of ``spec`` with ``state_dict`` (SearchedNet's keys) to ``out_dir``.

    ``info``: arch_id, input_size [H, W], latency_ms, latency_p90_ms, psnr_db, psnr_gain_db,
    budget_ms, device, backend, trial, train_config (a dict; its loss, steps, patch_size, batch_size,
    lr, warmup_steps, noise_sigma, rotate, reparam set train.py's defaults). ``out_dir`` must be missing or
    empty, or hold an untouched previous export of the same arch (of any arch with ``replace``):
    then it is replaced. Raises UsageError (nothing written) for bad weights, info or target.
    """
    if not isinstance(spec, ArchSpec):
        raise UsageError("export_spec needs an ArchSpec")
    details = ExportInfo.from_dict(spec, info)
    weights = check_state_dict(spec, state_dict, "weights")
    out_dir = Path(out_dir)
    _check_target(out_dir, spec.arch_id, replace)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write(spec, weights, details, tmp)
        _chmod_like_umask(tmp)
        _check_target(out_dir, spec.arch_id, replace)  # again: another process may have written there
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write(spec: ArchSpec, weights: dict[str, torch.Tensor], info: ExportInfo, folder: Path) -> None:
    from safetensors.torch import save_file

    (folder / "model.py").write_text(model_source(spec, info), encoding="utf-8")
    (folder / "train.py").write_text(train_source(spec, info), encoding="utf-8")
    shutil.copyfile(reparam.__file__, folder / "reparam.py")  # train.py's re-parameterized training
    (folder / "arch.json").write_text(spec.to_json() + "\n", encoding="utf-8")
    (folder / "README.md").write_text(readme_source(spec, info), encoding="utf-8")
    mapped = map_state_dict(spec, weights)
    save_file(mapped, str(folder / "model.safetensors"), metadata={"arch_id": spec.arch_id})
    torch.save(mapped, folder / "model.pt")
    net = _self_check(spec, weights, mapped, folder / "model.py")
    h, w = info.input_size
    try:
        export_onnx(net, folder / "model.onnx", h, w, fp16=True)
        export_onnx(net, folder / "model_fp32.onnx", h, w, fp16=False)
    except Exception as exc:  # the exporter raises many types; the user needs the reason in one line
        raise NasError(f"ONNX export of {spec.arch_id[:12]} failed: {type(exc).__name__}: {exc}") from exc
    manifest = {
        "format": EXPORT_FORMAT, "arch_id": spec.arch_id, "summary": spec.summary(), "trial": info.trial,
        "input_size": list(info.input_size), "latency_ms": info.latency_ms, "latency_p90_ms": info.latency_p90_ms,
        "psnr_db": info.psnr_db, "psnr_gain_db": info.psnr_gain_db, "budget_ms": info.budget_ms,
        "device": info.device, "backend": info.backend, "loss": info.loss, "train": info.train,
        "files": {name: _sha256(folder / name) for name in EXPORT_FILES if name != MANIFEST},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------- run dirs
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object")
    return data


def _read_trials(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "trials.csv"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a valid trials table: {exc}") from None
    if rows and not {"number", "arch_id", "trained"} <= set(rows[0]):
        raise UsageError(f"{path} lacks the columns number, arch_id and trained")
    return rows


def _pick_trial(run_dir: Path, run: dict[str, Any], rows: list[dict[str, str]], trial: int | None) -> dict[str, str]:
    """The trials.csv row to export: ``trial``, or the best feasible trained one."""
    by_number = {r.get("number"): r for r in rows}
    trained = [r for r in rows if r.get("trained") == "True"]
    if trial is None:
        summary = run.get("summary")
        best = summary.get("best") if isinstance(summary, dict) else None
        if isinstance(best, dict) and isinstance(best.get("trial"), int) and str(best["trial"]) in by_number:
            trial = best["trial"]
        else:
            feasible = [r for r in trained if r.get("over_budget") != "True" and _number(r.get("psnr_gain_db")) is not None]
            if not feasible:
                raise UsageError(f"{run_dir}: no trial was trained within the budget, so there is no best to "
                                 "export: pass --trial N for a trained trial, or run the search again")
            return max(feasible, key=lambda r: (_number(r["psnr_gain_db"]), -int(r["number"])))
    row = by_number.get(str(trial))
    if row is None:
        numbers = ", ".join(safe_text(r.get("number"), 12) for r in trained) or "none"
        raise UsageError(f"{run_dir}: there is no trial {trial} in trials.csv (trained trials: {numbers})")
    if row.get("trained") != "True":
        numbers = ", ".join(safe_text(r.get("number"), 12) for r in trained) or "none"
        why = "it was over the latency budget" if row.get("over_budget") == "True" else "it was not trained"
        raise UsageError(f"{run_dir}: trial {trial} has no trained weights ({why}): "
                         f"pick a trained trial ({numbers})")
    return row


def _device_name(device: Any) -> str:
    """A human name from run.json's device fingerprint (a string, or a dict with a name in it)."""
    if isinstance(device, str):
        return device
    if isinstance(device, dict):
        for key in ("name", "gpu_name", "cpu_model", "model", "gpu", "cpu", "device"):
            found = _device_name(device.get(key))
            if found:
                return found
    return ""


def export_run(run_dir: Path, out_dir: Path, trial: int | None = None, *, replace: bool = False) -> Path:
    """Export one trained trial of a run dir (default: the best feasible one) to ``out_dir``.

    Reads run.json, trials.csv and archs/<arch_id>/{arch.json, latency.json, train.json,
    weights.safetensors}. Raises UsageError with one line (nothing written) for a missing run dir,
    an unknown or untrained trial, hostile files, or an ``out_dir`` that holds something else.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise UsageError(f"{run_dir} is not a run dir (no run.json): pass the --run-dir of a `nas search`")
    run = _read_json(run_dir / "run.json")
    row = _pick_trial(run_dir, run, _read_trials(run_dir), trial)
    arch_id = row.get("arch_id", "")
    if not _ARCH_ID.fullmatch(arch_id):
        raise UsageError(f"{run_dir}/trials.csv: trial {safe_text(row.get('number'))} has a malformed arch_id")
    arch_dir = run_dir / "archs" / arch_id
    spec = load_spec(str(arch_dir / "arch.json"))
    if spec.arch_id != arch_id:
        raise SpecError(f"{arch_dir}/arch.json describes arch {spec.arch_id[:12]}, not {arch_id[:12]}: "
                        "the run dir was edited")
    weights_path = arch_dir / "weights.safetensors"
    if not weights_path.is_file():
        raise UsageError(f"{weights_path} is missing: that trial has no trained weights")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UsageError(f"{weights_path} is not a readable safetensors file: {exc}") from None
    train_json = arch_dir / "train.json"
    train = _read_json(train_json) if train_json.is_file() else {}
    latency = _read_json(arch_dir / "latency.json") if (arch_dir / "latency.json").is_file() else {}
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    train_config = train.get("train_config") if isinstance(train.get("train_config"), dict) else run.get("train_config")
    workload = run.get("workload") if isinstance(run.get("workload"), dict) else {}
    input_size = config.get("input_size")
    if input_size is None and "height" in workload:
        input_size = [workload.get("height"), workload.get("width")]
    info = {
        "arch_id": arch_id,
        "trial": int(row["number"]) if row.get("number", "").isdigit() else None,
        "input_size": input_size,
        "latency_ms": _number(row.get("latency_ms")) or _number(latency.get("median")),
        "latency_p90_ms": _number(row.get("latency_p90_ms")) or _number(latency.get("p90")),
        "psnr_db": _number(row.get("psnr_db")) or _number(train.get("psnr_db")),
        "psnr_gain_db": _number(row.get("psnr_gain_db")) if _number(row.get("psnr_gain_db")) is not None
        else _number(train.get("psnr_gain_db")),
        "budget_ms": config.get("budget_ms"),
        "device": _device_name(run.get("device")) or "unknown",
        "backend": run.get("backend", "unknown"),
        "train_config": train_config if isinstance(train_config, dict) else {"loss": config.get("loss")},
    }
    return export_spec(spec, state, Path(out_dir), info, replace=replace)
