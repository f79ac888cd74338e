"""ONNX export: fp32 runs in ONNX Runtime and matches PyTorch; fp16 is fp16 end to end."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import search_spaces as ss
from search_spaces.onnx_export import ONNX_OPSET

SIZE = (32, 48)
FP16 = onnx.TensorProto.FLOAT16


def specs_under_test() -> list[ss.ArchSpec]:
    out = []
    for name in ss.list_spaces():
        space = ss.get_space(name)
        out += list(space.references().values())
        out += [space.random_spec(seed, SIZE) for seed in range(4)]
    return out


def _perturbed(spec: ss.ArchSpec) -> torch.nn.Module:
    """A built net with a non-zero output conv, so the comparison checks the whole graph."""
    net = ss.build(spec)
    torch.manual_seed(0)
    with torch.no_grad():
        net.out.weight.normal_(0, 0.05)
    return net


@pytest.mark.parametrize("spec", specs_under_test(), ids=lambda s: s.summary().replace(" ", "_")[:60])
def test_fp32_onnx_matches_pytorch(spec: ss.ArchSpec) -> None:
    net = _perturbed(spec)
    data = ss.export_onnx(net, None, *SIZE)
    model = onnx.load_from_string(data)
    assert model.opset_import[0].version >= 17
    ops = {n.op_type for n in model.graph.node}
    assert ops <= {"Conv", "Relu", "Add", "Sub", "Resize", "DepthToSpace", "SpaceToDepth", "Constant",
                   "Reshape", "Transpose", "Identity"}, ops
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, *SIZE)
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = net(x).numpy()
    assert got.shape == want.shape == (1, 3, SIZE[0] * spec.scale, SIZE[1] * spec.scale)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("spec", specs_under_test()[:6], ids=lambda s: s.summary().replace(" ", "_")[:60])
def test_fp16_onnx_is_fp16_end_to_end(spec: ss.ArchSpec, tmp_path) -> None:
    path = tmp_path / "model.onnx"
    net = _perturbed(spec)
    ss.export_onnx(net, path, *SIZE, fp16=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == ONNX_OPSET
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [FP16]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [FP16]
    shapes = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert shapes == [1, 3, *SIZE]  # fixed shapes
    float_inits = [t for t in model.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, FP16)]
    assert float_inits and all(t.data_type == FP16 for t in float_inits)
    # It also runs (ORT has fp16 CPU kernels for these ops) and stays close to fp32.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, *SIZE), dtype=np.float32)
    (got,) = session.run(None, {"input": x.astype(np.float16)})
    assert got.dtype == np.float16
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got.astype(np.float32), want, atol=3e-2)


def test_export_leaves_the_model_untouched() -> None:
    net = _perturbed(ss.get_space("sr2x").references()["tiny"])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ss.export_onnx(net, None, *SIZE, fp16=True)
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in net.state_dict().items())
