"""The one walk of a spec's topology: every op in forward order with its shapes and costs.

``plan(spec, height, width)`` lists the ops of ``SearchedNet`` (search_spaces/network.py) in the
order its ``forward`` runs them, each with input/output channels, output resolution, MACs,
parameters and the activation elements it reads and writes. Everything that needs the topology
reads it from here: ``count`` (the roofline and the report's totals), the report's layer table and
the export's code generator. tests/test_spaces.py checks the plan's convs against the modules
``build`` creates, key by key, so the plan and the network cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.spec import ArchSpec, Conv

# Op kinds, in the order they can appear.
RESIZE, LUMA, WHITEN, SPACE_TO_DEPTH, CONV, MERGE, LONG_SKIP, DEPTH_TO_SPACE, RESIDUAL = (
    "resize", "luma", "whiten", "space_to_depth", "conv", "merge", "long_skip", "depth_to_space", "residual")


@dataclass(frozen=True)
class Op:
    """One op of the forward pass, for a batch of one.

    ``kind`` is one of the constants above. For convs, ``source`` is the module's key prefix in
    ``SearchedNet``'s state_dict (``head.convs.0``, ``levels.inner.up``, ``out``), ``name`` a short
    identifier (``head1``, ``body2_1``, ``up2``, ``out``), ``relu`` whether a ReLU follows and
    ``residual`` whether its input is added back (``skip='add'`` with matching widths). ``level``
    is the encoder-decoder level the op belongs to (0: full resolution). ``moved`` counts the
    activation elements read and written (an unfused implementation's traffic).
    """

    kind: str
    stage: str
    cin: int
    cout: int
    height: int        # output resolution
    width: int
    kernel: int = 0
    stride: int = 1
    macs: int = 0
    params: int = 0
    moved: int = 0
    source: str = ""
    name: str = ""
    relu: bool = False
    residual: bool = False
    level: int = 0

    @property
    def shape(self) -> str:
        return f"{self.cout}x{self.height}x{self.width}"


class _Walker:
    def __init__(self, spec: ArchSpec) -> None:
        self.spec = spec
        self.ops: list[Op] = []

    def conv(self, stage: str, name: str, source: str, cin: int, cout: int, k: int, h: int, w: int,
             stride: int = 1, relu: bool = True, residual: bool = False, level: int = 0) -> tuple[int, int]:
        """A conv on an (cin, h, w) input; returns the output size. A residual add reads both operands
        and writes the sum: its traffic is counted with the conv."""
        ho, wo = h // stride, w // stride
        moved = cin * h * w + cout * ho * wo + (3 * cin * h * w if residual else 0)
        self.ops.append(Op(CONV, stage, cin, cout, ho, wo, kernel=k, stride=stride,
                           macs=ho * wo * cin * cout * k * k, params=cout * cin * k * k + cout, moved=moved,
                           source=source, name=name, relu=relu, residual=residual, level=level))
        return ho, wo

    def stage(self, stage: str, name: str, source: str, cin: int, layers: tuple[Conv, ...], h: int, w: int,
              level: int) -> int:
        for i, layer in enumerate(layers):
            residual = self.spec.skip == "add" and cin == layer.width
            self.conv(f"{stage}[{i}]", f"{name}{i + 1}", f"{source}.{i}", cin, layer.width, layer.kernel, h, w,
                      residual=residual, level=level)
            cin = layer.width
        return cin

    def level(self, i: int, source: str, cin: int, h: int, w: int) -> None:
        lv = self.spec.levels[i]
        n = i + 1
        h2, w2 = self.conv(f"down{n}", f"down{n}", f"{source}.down", cin, lv.width, 2, h, w, stride=2, level=n)
        inner = self.stage(f"level{n}", f"body{n}_", f"{source}.body.convs", lv.width, lv.body, h2, w2, level=n)
        if i + 1 < len(self.spec.levels):
            self.level(i + 1, f"{source}.inner", inner, h2, w2)
        self.conv(f"up{n}", f"up{n}", f"{source}.up", inner, 4 * cin, lv.up_kernel, h2, w2, relu=False, level=n)
        # depth-to-space (4cin, h2, w2) -> (cin, h, w), add the skip, ReLU
        self.ops.append(Op(MERGE, f"up{n}", 4 * cin, cin, h, w, moved=4 * cin * h2 * w2 + cin * h * w + 3 * cin * h * w,
                           relu=True, level=n))


def plan(spec: ArchSpec, height: int, width: int) -> list[Op]:
    """The ops of ``build(spec)`` for a (1, 3, height, width) input, in forward order."""
    c, f, s = spec.in_channels, spec.space_to_depth, spec.scale
    walk = _Walker(spec)
    ops = walk.ops
    H, W = height, width
    if spec.upsample not in ("identity", "none"):
        ops.append(Op(RESIZE, "base", 3, 3, H * s, W * s, moved=3 * H * W + 3 * H * W * s * s))
    if spec.color == "luma":
        # a fixed 1x1 conv (BT.601 weights, not trained: no parameters)
        ops.append(Op(LUMA, "luma", 3, 1, H, W, kernel=1, macs=3 * H * W, moved=3 * H * W + H * W))
    ops.append(Op(WHITEN, "entry", c, c, H, W, moved=2 * c * H * W))
    if f > 1:
        ops.append(Op(SPACE_TO_DEPTH, "entry", c, c * f * f, H // f, W // f, moved=2 * c * H * W))
    h, w = H // f, W // f
    cin = walk.stage("head", "head", "head.convs", c * f * f, spec.head, h, w, level=0)
    if spec.levels:
        walk.level(0, "levels", cin, h, w)
    cin = walk.stage("tail", "tail", "tail.convs", cin, spec.tail, h, w, level=0)
    if spec.long_skip:
        # + the first head layer's output: reads both operands, writes the sum
        ops.append(Op(LONG_SKIP, "output", cin, cin, h, w, moved=3 * cin * h * w))
    out_ch = c * (s * f) ** 2
    walk.conv("output", "out", "out", cin, out_ch, spec.output_kernel, h, w, relu=False)
    if s * f > 1:
        ops.append(Op(DEPTH_TO_SPACE, "output", out_ch, c, H * s, W * s, moved=2 * out_ch * h * w))
    if spec.upsample == "none":
        return ops  # no base to add: the depth-to-space output is the image
    # base (3 channels) + residual (c channels, broadcast over RGB for luma) -> 3 channels
    ops.append(Op(RESIDUAL, "output", c, 3, H * s, W * s,
                  moved=3 * H * W * s * s + c * H * W * s * s + 3 * H * W * s * s))
    return ops


def identity(spec: ArchSpec, height: int, width: int) -> tuple[object, ...]:
    """What makes two specs one network at this input size: the plan's ops without their module names,
    plus what ``SearchedNet`` reads beside the plan (the task and scale, the base's resize kind, the colour).

    The ops in forward order with shapes, kernels, strides, ReLUs and residual adds fix the graph: every
    add's other operand follows from the order (a merge adds what entered its level's down conv, the long
    skip the first conv's output, the residual the base), so names (``head2`` or ``tail1``) change nothing
    but the state_dict's keys. Canonical specs (search_spaces/spec.py) have one arch_id per identity.
    """
    ops = tuple((op.kind, op.cin, op.cout, op.height, op.width, op.kernel, op.stride, op.relu, op.residual)
                for op in plan(spec, height, width))
    return (spec.space, spec.scale, spec.upsample, spec.color, ops)


def convs(spec: ArchSpec, height: int, width: int) -> list[Op]:
    """The trainable convs of the plan, in forward order."""
    return [op for op in plan(spec, height, width) if op.kind == CONV]
