"""ArchSpec: a frozen, validated, canonical description of one network.

The spec is the unit everything else keys on: the latency database, the training cache, the
report and the export all use ``arch_id`` = sha256 of the canonical JSON form. Loading JSON
validates every field and names the one that breaks the rules, so a hand-edited or hostile
``arch.json`` never reaches the model builder (or the code generator) unchecked. Making a spec also
normalizes it: a choice that changes nothing takes its one canonical value, so one network has one arch_id.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from search_spaces.errors import UsageError

SCHEMA_VERSION = 1

SPACE_KINDS = ("sr", "denoise")
SR_SCALES = (2, 3, 4)
SR_UPSAMPLES = ("nearest", "bilinear", "bicubic", "none")  # none: no classical base (Bicubic++)
COLORS = ("rgb", "luma")
SKIPS = ("none", "add")
KERNELS = (1, 3, 5)
UP_KERNELS = (1, 3)
SPACE_TO_DEPTH = (1, 2)
MIN_WIDTH, MAX_WIDTH, WIDTH_STEP = 8, 256, 8
MAX_LAYERS_PER_STAGE = 16
MAX_LEVELS = 3
ARCH_ID = re.compile(r"[0-9a-f]{64}")  # what ``ArchSpec.arch_id`` makes: sha256 hex, never a path


def is_arch_id(text: object) -> bool:
    """True for a well-formed arch id (the one pattern run dirs, reports and exports check ids against)."""
    return isinstance(text, str) and ARCH_ID.fullmatch(text) is not None


class SpecError(UsageError, ValueError):
    """A spec (or its JSON) breaks a rule; the message names the offending field."""


@dataclass(frozen=True)
class Conv:
    """One conv + ReLU layer: ``width`` output channels, ``kernel`` x ``kernel``, zero padding."""

    width: int
    kernel: int

    def to_dict(self) -> dict[str, Any]:
        return {"op": "conv", "width": self.width, "kernel": self.kernel}


@dataclass(frozen=True)
class Level:
    """One encoder-decoder level: strided 2x2 conv down to ``width``, ``body`` at half resolution,
    then a ``up_kernel`` conv to 4x the skip width, depth-to-space, add the skip, ReLU."""

    width: int
    body: tuple[Conv, ...] = ()
    up_kernel: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "body": [c.to_dict() for c in self.body], "up_kernel": self.up_kernel}


@dataclass(frozen=True)
class ArchSpec:
    """A whole network.

    Data flow (s = scale, f = space_to_depth, c = 3 for rgb or 1 for luma):
      x (N,3,H,W) in [0,1] -> base = classical upsample of x to (N,3,sH,sW)
      z = whiten(x or luma(x)) (N,c,H,W) -> pixel-unshuffle f -> (N,c*f*f,H/f,W/f)
      -> head convs -> levels (down/up, nested) -> tail convs
      -> with ``long_skip``: + the first head layer's output (SESR's and Bicubic++'s feature skip)
      -> output conv to c*(s*f)^2 channels (zero-initialized) -> pixel-shuffle s*f -> (N,c,sH,sW)
      -> out = base + residual (a luma residual is added to all three channels, leaving chroma intact)
    With ``upsample='none'`` (sr, rgb only) there is no base: the output conv's bias starts at 0.5 and
    the net draws the whole image, as Bicubic++ does.
    """

    space: str
    scale: int
    upsample: str
    color: str
    space_to_depth: int
    head: tuple[Conv, ...]
    levels: tuple[Level, ...] = ()
    tail: tuple[Conv, ...] = ()
    skip: str = "none"
    output_kernel: int = 3
    long_skip: bool = False
    schema_version: int = field(default=SCHEMA_VERSION)
    # the arch_id of the spec as stated, before normalization: what nas keyed it by before issue #25
    stated_id: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate, then normalize: a choice that changes nothing takes its one canonical value, so that
        two specs of one network have one arch_id (a spec canonical as stated keeps the id it always had)."""
        _validate(self)
        object.__setattr__(self, "stated_id", self.arch_id)
        for name, value in _canonical_changes(self).items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ derived geometry
    @property
    def in_channels(self) -> int:
        """Channels the network body sees per pixel before space-to-depth (3 rgb, 1 luma)."""
        return 3 if self.color == "rgb" else 1

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (space-to-depth and each level halve)."""
        return self.space_to_depth * 2 ** len(self.levels)

    @property
    def depth(self) -> int:
        """Number of conv layers, output conv included."""
        n = len(self.head) + len(self.tail) + 1
        return n + sum(1 + len(lv.body) + 1 for lv in self.levels)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "space": self.space,
            "scale": self.scale,
            "upsample": self.upsample,
            "color": self.color,
            "space_to_depth": self.space_to_depth,
            "head": [c.to_dict() for c in self.head],
            "levels": [lv.to_dict() for lv in self.levels],
            "tail": [c.to_dict() for c in self.tail],
            "skip": self.skip,
            "output_kernel": self.output_kernel,
            # only when set: every spec without it keeps the arch_id (and latency rows) it always had
            **({"long_skip": True} if self.long_skip else {}),
        }

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, ASCII: the same bytes on every machine and Python."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @property
    def arch_id(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("ascii")).hexdigest()

    def answers_to(self, arch_id: str) -> bool:
        """Whether a stored ``arch_id`` names this spec: its arch_id, or the id of its JSON as written when that
        was not canonical (``stated_id``: a run dir or study from before issue #25). The one rule for readers
        that check a stored id against its stored spec; they key everything else by ``arch_id``."""
        return arch_id in (self.arch_id, self.stated_id)

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        """Validate a parsed JSON object and build the spec; raises SpecError naming the field."""
        return _parse_spec(data)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        """Parse and validate arch JSON; hostile input (bad syntax, NaN, absurd nesting) is a SpecError."""
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise SpecError(f"arch JSON is not valid JSON: {exc}") from None
        except RecursionError:
            raise SpecError("arch JSON is nested too deeply to be an architecture spec") from None
        return cls.from_dict(data)

    def summary(self) -> str:
        """The architecture in one line, e.g. ``sr2x rgb bilinear s2d1 | 5x5/64 3x3/32 | out 3x3``."""
        def convs(layers: tuple[Conv, ...]) -> str:
            return " ".join(f"{c.kernel}x{c.kernel}/{c.width}" for c in layers)

        parts = [convs(self.head)]
        for i, lv in enumerate(self.levels):
            parts.append(f"down{i + 1}/{lv.width}[{convs(lv.body)}]up{lv.up_kernel}x{lv.up_kernel}")
        if self.tail:
            parts.append(convs(self.tail))
        task = f"sr{self.scale}x" if self.space == "sr" else self.space
        return (
            f"{task} {self.color} {self.upsample} s2d{self.space_to_depth} skip:{self.skip} | "
            + " | ".join(p for p in parts if p)
            + (" | +head1" if self.long_skip else "")
            + f" | out {self.output_kernel}x{self.output_kernel}"
        )


def long_skip_fits(head: tuple[Conv, ...], levels: tuple[Level, ...], tail: tuple[Conv, ...]) -> bool:
    """Whether a long skip can join these stages: a layer at least between the first head layer and the
    output conv, and the first head layer as wide as what enters the output conv (the last head or tail
    layer: a level returns its input's width). The one rule; the spaces offer the skip only where it holds."""
    return len(head) + len(tail) + len(levels) >= 2 and head[0].width == (tail or head)[-1].width


def skip_adds(spec: ArchSpec) -> bool:
    """Whether ``skip='add'`` adds anywhere: some stage layer (head, level body, tail) as wide as its input,
    the rule ``network.Stage`` and ``plan`` apply. A level returns its input's width, so the tail's input is
    the head's output."""
    inputs = ((spec.in_channels * spec.space_to_depth**2, spec.head), (spec.head[-1].width, spec.tail),
              *((lv.width, lv.body) for lv in spec.levels))
    for cin, layers in inputs:
        for layer in layers:
            if layer.width == cin:
                return True
            cin = layer.width
    return False


# ---------------------------------------------------------------------- normalization
def _canonical_changes(spec: ArchSpec) -> dict[str, Any]:
    """The fields a valid spec must change to be canonical (none for most), each rule a choice that builds
    the same network (same ops and shapes: ``plan.identity``) whichever value it takes:
    - without levels, head and tail are one run of conv layers: they go in the head (up to the stage limit);
    - ``skip='add'`` where no layer is as wide as its input has nothing to add: ``skip='none'``."""
    changes: dict[str, Any] = {}
    if not spec.levels and spec.tail:
        layers = spec.head + spec.tail
        head, tail = layers[:MAX_LAYERS_PER_STAGE], layers[MAX_LAYERS_PER_STAGE:]
        if head != spec.head:
            changes |= {"head": head, "tail": tail}
    if spec.skip == "add" and not skip_adds(spec):
        changes["skip"] = "none"
    return changes


# ---------------------------------------------------------------------- validation
def _reject_constant(name: str) -> Any:
    raise SpecError(f"arch JSON holds {name}, which is not a number allowed in a spec")


def _check_int(value: Any, where: str) -> int:
    # bool is an int subclass in Python; a spec never means True when it says a width.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"field '{where}' must be an integer, got {value!r}")
    return value


def _check_choice(value: Any, choices: tuple[Any, ...], where: str) -> Any:
    if isinstance(value, bool) or value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise SpecError(f"field '{where}' must be one of {shown}, got {value!r}")
    return value


def _check_width(value: Any, where: str) -> int:
    value = _check_int(value, where)
    if not (MIN_WIDTH <= value <= MAX_WIDTH) or value % WIDTH_STEP:
        raise SpecError(
            f"field '{where}' must be a multiple of {WIDTH_STEP} between {MIN_WIDTH} and {MAX_WIDTH}, "
            f"got {value}"
        )
    return value


def _check_layers(layers: Any, where: str, allow_empty: bool) -> None:
    if not isinstance(layers, tuple):
        raise SpecError(f"field '{where}' must be a list of layers")
    if not allow_empty and not layers:
        raise SpecError(f"field '{where}' must hold at least one layer")
    if len(layers) > MAX_LAYERS_PER_STAGE:
        raise SpecError(f"field '{where}' holds {len(layers)} layers; at most {MAX_LAYERS_PER_STAGE}")
    for i, conv in enumerate(layers):
        if not isinstance(conv, Conv):
            raise SpecError(f"field '{where}[{i}]' must be a conv layer")
        _check_width(conv.width, f"{where}[{i}].width")
        _check_choice(_check_int(conv.kernel, f"{where}[{i}].kernel"), KERNELS, f"{where}[{i}].kernel")


def _validate(spec: ArchSpec) -> None:
    if _check_int(spec.schema_version, "schema_version") != SCHEMA_VERSION:
        raise SpecError(
            f"field 'schema_version' is {spec.schema_version}, this nas reads version {SCHEMA_VERSION}: "
            "re-export the spec with this version of nas"
        )
    _check_choice(spec.space, SPACE_KINDS, "space")
    _check_int(spec.scale, "scale")
    if spec.space == "sr":
        _check_choice(spec.scale, SR_SCALES, "scale")
        _check_choice(spec.upsample, SR_UPSAMPLES, "upsample")
    else:
        _check_choice(spec.scale, (1,), "scale")
        _check_choice(spec.upsample, ("identity",), "upsample")
    _check_choice(spec.color, COLORS, "color")
    _check_choice(_check_int(spec.space_to_depth, "space_to_depth"), SPACE_TO_DEPTH, "space_to_depth")
    _check_layers(spec.head, "head", allow_empty=False)
    if not isinstance(spec.levels, tuple):
        raise SpecError("field 'levels' must be a list of levels")
    if len(spec.levels) > MAX_LEVELS:
        raise SpecError(f"field 'levels' holds {len(spec.levels)} levels; at most {MAX_LEVELS}")
    for i, level in enumerate(spec.levels):
        if not isinstance(level, Level):
            raise SpecError(f"field 'levels[{i}]' must be a level")
        _check_width(level.width, f"levels[{i}].width")
        _check_layers(level.body, f"levels[{i}].body", allow_empty=True)
        _check_choice(_check_int(level.up_kernel, f"levels[{i}].up_kernel"), UP_KERNELS, f"levels[{i}].up_kernel")
    _check_layers(spec.tail, "tail", allow_empty=True)
    _check_choice(spec.skip, SKIPS, "skip")
    _check_choice(_check_int(spec.output_kernel, "output_kernel"), KERNELS, "output_kernel")
    if spec.upsample == "none" and spec.color != "rgb":
        raise SpecError("field 'color' must be 'rgb' with upsample 'none': a luma net needs a base for the chroma")
    if not isinstance(spec.long_skip, bool):
        raise SpecError(f"field 'long_skip' must be true or false, got {spec.long_skip!r}")
    if spec.long_skip and not long_skip_fits(spec.head, spec.levels, spec.tail):
        if len(spec.head) + len(spec.tail) + len(spec.levels) < 2:
            raise SpecError("field 'long_skip' needs at least two layers before the output conv to skip over")
        raise SpecError(
            f"field 'long_skip' adds the first head layer ({spec.head[0].width} wide) to the output conv's "
            f"input ({(spec.tail or spec.head)[-1].width} wide): make the widths equal or set long_skip false"
        )


# ---------------------------------------------------------------------- parsing
_SPEC_KEYS = {
    "schema_version", "space", "scale", "upsample", "color", "space_to_depth",
    "head", "levels", "tail", "skip", "output_kernel", "long_skip",
}
_REQUIRED_KEYS = _SPEC_KEYS - {"levels", "tail", "skip", "output_kernel", "long_skip"}
_CONV_KEYS = {"op", "width", "kernel"}
_LEVEL_KEYS = {"width", "body", "up_kernel"}


def _check_keys(obj: Any, allowed: set[str], required: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise SpecError(f"field '{where or 'spec'}' must be a JSON object")
    prefix = f"{where}." if where else ""
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise SpecError(f"unknown field '{prefix}{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(obj))
    if missing:
        raise SpecError(f"missing field '{prefix}{missing[0]}'")
    for key, value in obj.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"field '{prefix}{key}' must be a finite number")
    return obj


def _parse_layers(items: Any, where: str) -> tuple[Conv, ...]:
    if not isinstance(items, list):
        raise SpecError(f"field '{where}' must be a list of layers, got {items!r}")
    layers = []
    for i, item in enumerate(items):
        obj = _check_keys(item, _CONV_KEYS, {"op", "width", "kernel"}, f"{where}[{i}]")
        if obj["op"] != "conv":
            raise SpecError(f"field '{where}[{i}].op' must be 'conv' (the only layer op), got {obj['op']!r}")
        layers.append(Conv(width=_check_int(obj["width"], f"{where}[{i}].width"),
                           kernel=_check_int(obj["kernel"], f"{where}[{i}].kernel")))
    return tuple(layers)


def _parse_spec(data: Any) -> ArchSpec:
    obj = _check_keys(data, _SPEC_KEYS, _REQUIRED_KEYS, "")
    version = _check_int(obj["schema_version"], "schema_version")
    if version != SCHEMA_VERSION:
        raise SpecError(
            f"field 'schema_version' is {version}, this nas reads version {SCHEMA_VERSION}: "
            "re-export the spec with this version of nas"
        )
    levels_raw = obj.get("levels", [])
    if not isinstance(levels_raw, list):
        raise SpecError(f"field 'levels' must be a list of levels, got {levels_raw!r}")
    levels = []
    for i, item in enumerate(levels_raw):
        lv = _check_keys(item, _LEVEL_KEYS, {"width"}, f"levels[{i}]")
        levels.append(Level(
            width=_check_int(lv["width"], f"levels[{i}].width"),
            body=_parse_layers(lv.get("body", []), f"levels[{i}].body"),
            up_kernel=_check_int(lv.get("up_kernel", 1), f"levels[{i}].up_kernel"),
        ))
    for key in ("space", "upsample", "color", "skip"):
        if key in obj and not isinstance(obj[key], str):
            raise SpecError(f"field '{key}' must be a string, got {obj[key]!r}")
    return ArchSpec(
        schema_version=version,
        space=obj["space"],
        scale=_check_int(obj["scale"], "scale"),
        upsample=obj["upsample"],
        color=obj["color"],
        space_to_depth=_check_int(obj["space_to_depth"], "space_to_depth"),
        head=_parse_layers(obj["head"], "head"),
        levels=tuple(levels),
        tail=_parse_layers(obj.get("tail", []), "tail"),
        skip=obj.get("skip", "none"),
        output_kernel=_check_int(obj.get("output_kernel", 3), "output_kernel"),
        long_skip=obj.get("long_skip", False),
    )


def load_spec(path: str) -> ArchSpec:
    """Read and validate an arch.json file; errors name the file and the field."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise SpecError(f"cannot read arch file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SpecError(f"arch file {path} is not UTF-8 text") from None
    try:
        return ArchSpec.from_json(text)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
