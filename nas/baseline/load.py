"""Reading and checking a ``--baseline NAME=model.onnx`` before anything is written: one line, exit 2."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nas.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from latency_db.graph import OnnxGraph
    from nas.target import Target

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
CHECK_SIDE = 48  # the converted module must also run on a patch of this side (the training's)


@dataclass(frozen=True)
class Baseline:
    """A checked baseline: its name and file, the graph (a latency candidate), and whether it retrains."""

    name: str
    path: Path
    graph: OnnxGraph
    converts: bool      # the graph converts to a PyTorch module that matches ONNX Runtime's output
    note: str | None    # why it does not convert (then it is shown as the user has it only)

    @property
    def kind(self) -> str:
        from latency_db.graph_store import CHANNELS

        return CHANNELS[self.graph.channels]


def baseline_arg(text: str) -> tuple[str, str]:
    """argparse type: NAME=PATH."""
    name, sep, path = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=model.onnx")
    if not NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"{text!r}: a baseline name is 1-64 letters, digits, '.', '_', '+' or '-'")
    return name, path


def _fail(name: str, path: str, why: str) -> UsageError:
    return UsageError(f"--baseline {name}={path}: {why}")


def run_graph(data: bytes, x: np.ndarray) -> np.ndarray:
    """The graph's output for ``x`` on ONNX Runtime's CPU provider (the graph's input fixed to x's shape)."""
    import onnxruntime as ort

    from latency_db.graph import fix_shape

    opts, quiet = ort.SessionOptions(), ort.RunOptions()
    opts.log_severity_level = quiet.log_severity_level = 4  # its failures reach the user as one line, not a log
    sess = ort.InferenceSession(fix_shape(data, x.shape), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x}, quiet)[0]


def load_baseline(name: str, path: str, target: Target) -> Baseline:
    """Read and check one graph against the task and input size; UsageError (one line) when it cannot serve."""
    import numpy as np

    from latency_db.graph import OnnxGraph
    from latency_db.graph_store import GraphError, check_graph

    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise _fail(name, path, f"cannot read it ({exc.strerror or exc})") from None
    try:
        info = check_graph(data)
    except GraphError as exc:
        raise _fail(name, path, str(exc)) from None
    channels, io_dtype, in_dims = info.channels, info.io_dtype, info.in_dims
    h, w = target.input_size
    x = np.random.default_rng(0).random((1, channels, h, w), dtype=np.float32)
    x = x.astype(np.float16 if io_dtype == "fp16" else np.float32)
    try:
        y = run_graph(data, x)
    except Exception as exc:  # noqa: BLE001  onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        fixed = "" if in_dims[2:] in ([h, w], [None, None]) else f" (its input is fixed at {in_dims[2]}x{in_dims[3]})"
        raise _fail(name, path, f"ONNX Runtime cannot run it on a {h}x{w} input{fixed}: "
                    f"{str(exc).splitlines()[0][:160]}") from None
    scale = y.shape[2] // h if y.ndim == 4 else 0
    if y.ndim != 4 or y.shape[:2] != (1, channels) or tuple(y.shape[2:]) != (h * scale, w * scale):
        raise _fail(name, path, f"gives {tuple(y.shape)} for a {tuple(x.shape)} input: not one frame at an "
                    "integer scale")
    if scale != target.space.scale:
        raise _fail(name, path, f"scales by {scale}, but the task {target.space.name} is x{target.space.scale}")
    graph = OnnxGraph(data=data, channels=channels, scale=scale, io_dtype=io_dtype, name=name)
    note = conversion_problem(data, x, y)
    return Baseline(name=name, path=Path(path), graph=graph, converts=note is None, note=note)


def conversion_problem(data: bytes, x: np.ndarray, y: np.ndarray) -> str | None:
    """Why the graph does not convert to a trainable module matching ONNX Runtime on ``x``; None when it does."""
    import numpy as np
    import torch

    from search_spaces.onnx_import import ConversionError, to_module

    try:
        module = to_module(data).eval()
        with torch.no_grad():
            got = module(torch.from_numpy(x.astype(np.float32))).numpy()
            module(torch.zeros(1, x.shape[1], CHECK_SIDE, CHECK_SIDE))
    except ConversionError as exc:
        return str(exc)
    except RuntimeError as exc:
        return f"the converted module fails: {str(exc).splitlines()[0][:120]}"
    tol = 2e-2 if x.dtype == np.float16 else 1e-3
    err = float(np.abs(got - y.astype(np.float32)).max()) if got.shape == y.shape else float("inf")
    if not err <= tol * max(1.0, float(np.abs(y).max())):
        return f"the converted module's output differs from ONNX Runtime's (max {err:.3g})"
    return None


def load_baselines(items: list[tuple[str, str]], target: Target) -> list[Baseline]:
    """Every ``--baseline``, checked; names must differ."""
    names = [n for n, _ in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"--baseline {repeated[0]} is given twice: one file a name")
    return [load_baseline(n, p, target) for n, p in items]
