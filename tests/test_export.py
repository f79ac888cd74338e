"""`nas export`: the exported folder works without this project, matches the searched model, trains,
resumes, exports ONNX, passes ruff, and hostile or bad input is refused with nothing written."""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nas.cli import main as nas_main
from nas.errors import UsageError
from nas.export import EXPORT_FILES, ExportInfo, export_run, export_spec, map_state_dict, model_source
from search_spaces import ArchSpec, Conv, Level, SpecError, build, get_space, list_spaces, load_spec

PROJECT_PACKAGES = ("nas", "search_spaces", "latency_db")
RUFF = Path(sys.executable).with_name("ruff")

# Runs a script as `python script.py args` would, but with this project's packages (and any others
# named in argv[1]) made unimportable by a meta-path finder placed before every other finder, the
# editable-install finder included. `python -I` already ignores PYTHONPATH, user site and the cwd.
PRELUDE = """
import os, runpy, sys
blocked = set(sys.argv[1].split(","))
assert not blocked & {m.split(".")[0] for m in sys.modules}, "a blocked package was imported at startup"
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
script = os.path.abspath(sys.argv[2])
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""

MODEL_CHECK = """
import importlib, sys
import numpy as np
import torch
for name in ("nas", "search_spaces", "latency_db"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"{name} is importable: the environment is not clean")
import model
net = model.load_weights(model.build_model()).eval()
with torch.no_grad():
    y = net(torch.from_numpy(np.load(sys.argv[1])))
np.save(sys.argv[2], y.numpy())
print("safetensors used:", "safetensors" in sys.modules)
"""


def run_clean(script: Path, *args: str, cwd: Path, also_block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``script`` in a subprocess with a clean environment where this project cannot be imported."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}  # one thread, as every test process (conftest)
    blocked = ",".join(PROJECT_PACKAGES + also_block)
    return subprocess.run([sys.executable, "-I", "-c", PRELUDE, blocked, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def best_row(run_dir: Path) -> dict[str, str]:
    best = json.loads((run_dir / "run.json").read_text())["summary"]["best"]
    with open(run_dir / "trials.csv", newline="") as fh:
        return next(r for r in csv.DictReader(fh) if r["number"] == str(best["trial"]))


def searched_model(run_dir: Path, arch_id: str) -> torch.nn.Module:
    """The searched network as the search trained it (SearchedNet with its own weights: a finalist's longer
    training's when it had one, as the export ships)."""
    arch = run_dir / "archs" / arch_id
    net = build(load_spec(str(arch / "arch.json")))
    final = arch / "final_weights.safetensors"
    net.load_state_dict(load_file(str(final if final.is_file() else arch / "weights.safetensors")))
    return net


def perturbed_state(spec: ArchSpec, seed: int) -> dict[str, torch.Tensor]:
    """build(spec)'s weights with noise on every parameter, so the zero output conv is non-zero."""
    torch.manual_seed(seed)
    net = build(spec)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.state_dict()


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"gen_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_onnx(folder: Path, reference: torch.nn.Module, size: tuple[int, int]) -> None:
    """model_fp32.onnx matches ``reference`` in ONNX Runtime; model.onnx is fp16 end to end."""
    import onnx
    import onnxruntime as ort

    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference(x).numpy()
    session = ort.InferenceSession(str(folder / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    graph = onnx.load(str(folder / "model.onnx")).graph
    fp16 = onnx.TensorProto.FLOAT16
    assert [v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)] == [fp16, fp16]
    weights = [t for t in graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, fp16)]
    assert weights and all(t.data_type == fp16 for t in weights)


def write_pngs(folder: Path, n: int, side: int = 64) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    for i in range(n):
        base = np.sin(xx / (2.0 + i)) * np.cos(yy / (3.0 + i)) * 0.4 + 0.5
        img = base[..., None] * np.array([1.0, 0.7, 0.4]) + 0.1 * rng.random((side, side, 3))
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"frame{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def exported(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best trial of the session's tiny search, exported with export_run."""
    return export_run(tiny_run_dir, tmp_path_factory.mktemp("export") / "best")


@pytest.fixture()
def run_copy(tiny_run_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run dir to tamper with."""
    return Path(shutil.copytree(tiny_run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("best")))


# ---------------------------------------------------------------------- the exported folder
def test_export_folder_holds_the_winner(exported: Path, tiny_run_dir: Path) -> None:
    row = best_row(tiny_run_dir)
    assert sorted(p.name for p in exported.iterdir()) == sorted(EXPORT_FILES)
    assert load_spec(str(exported / "arch.json")).arch_id == row["arch_id"]
    manifest = json.loads((exported / "export.json").read_text())
    assert manifest["arch_id"] == row["arch_id"] and manifest["trial"] == int(row["number"])
    head = ast.get_docstring(ast.parse((exported / "model.py").read_text()))
    assert row["arch_id"] in head and f"{float(row['latency_ms']):.3f} ms median" in head
    assert f"{float(row['final_psnr_gain_db'] or row['psnr_gain_db']):+.3f} dB" in head  # a finalist's final gain
    readme = (exported / "README.md").read_text()
    assert "trtexec --onnx=model.onnx --saveEngine=model.engine" in readme and "--stronglyTyped" in readme
    assert "python train.py --data" in readme
    safetensors, pt = load_file(str(exported / "model.safetensors")), torch.load(exported / "model.pt",
                                                                                 weights_only=True)
    assert safetensors.keys() == pt.keys() and all(torch.equal(safetensors[k], pt[k]) for k in pt)


def test_model_py_needs_only_torch_and_matches_the_searched_model(exported: Path, tiny_run_dir: Path,
                                                                  tmp_path: Path) -> None:
    source = (exported / "model.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"__future__", "os", "pathlib", "torch", "torch.nn.functional", "safetensors.torch"}
    h, w = json.loads((exported / "export.json").read_text())["input_size"]
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "x.npy", x.numpy())
    folder = Path(shutil.copytree(exported, tmp_path / "exported"))  # a user's script next to model.py
    (folder / "check.py").write_text(MODEL_CHECK)
    with torch.no_grad():
        want = searched_model(tiny_run_dir, best_row(tiny_run_dir)["arch_id"])(x).numpy()
    for extra, uses_safetensors in (((), True), (("safetensors",), False)):  # then the .pt fallback
        out = tmp_path / f"y{len(extra)}.npy"
        proc = run_clean(folder / "check.py", str(tmp_path / "x.npy"), str(out), cwd=tmp_path, also_block=extra)
        assert proc.returncode == 0, proc.stderr
        assert f"safetensors used: {uses_safetensors}" in proc.stdout
        np.testing.assert_allclose(np.load(out), want, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_train_py_trains_checkpoints_resumes_and_exports_onnx(exported: Path, tmp_path: Path) -> None:
    import onnx

    data = write_pngs(tmp_path / "frames", 5)
    common = ["--data", str(data), "--patch", "16", "--batch-size", "2", "--device", "cpu", "--val-every", "2"]
    first = run_clean(exported / "train.py", *common, "--steps", "4", "--stop-at", "2", "--out", "a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "stopped at step 2 of 4" in first.stdout and not (tmp_path / "a" / "model.safetensors").exists()
    state = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert state["step"] == 2 and state["optimizer"]["state"]
    resumed = run_clean(exported / "train.py", *common, "--steps", "4", "--out", "a", "--resume", "--no-onnx",
                        cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from a/last.pt at step 2" in resumed.stdout
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=True)["step"] == 4
    straight = run_clean(exported / "train.py", *common, "--steps", "4", "--out", "b", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)  # 2 + resumed 2 steps == 4 steps in one go
    start = load_file(str(exported / "model.safetensors"))
    assert any(not torch.equal(start[k], b[k]) for k in b)  # training moved the weights
    with open(tmp_path / "b" / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"] and rows[-1]["val_psnr_db"]
    graph = onnx.load(str(tmp_path / "b" / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert (tmp_path / "b" / "model_fp32.onnx").is_file() and (tmp_path / "b" / "best.safetensors").is_file()


def test_onnx_graphs(exported: Path, tiny_run_dir: Path) -> None:
    h, w = json.loads((exported / "export.json").read_text())["input_size"]
    check_onnx(exported, searched_model(tiny_run_dir, best_row(tiny_run_dir)["arch_id"]), (h, w))


# ---------------------------------------------------------------------- the whole space
def space_specs(name: str, n_random: int = 25) -> list[ArchSpec]:
    space = get_space(name)
    specs = {s.arch_id: s for s in (space.references() | space.modern_references()).values()}
    specs.update({s.arch_id: s for s in (space.random_spec(seed) for seed in range(n_random))})
    return list(specs.values())


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[ArchSpec, dict, Path]]]:
    """model.py sources for the references and 25 random specs of every space, with perturbed weights."""
    folder = tmp_path_factory.mktemp("generated")
    out = {}
    for space in list_spaces():
        out[space] = []
        for i, spec in enumerate(space_specs(space)):
            path = folder / f"{space}_{i:02d}.py"
            path.write_text(model_source(spec, ExportInfo.from_dict(spec, {})))
            out[space].append((spec, perturbed_state(spec, i), path))
    return out


@pytest.mark.parametrize("space", list_spaces())
def test_generated_model_equals_searched_net_over_the_space(space: str, generated: dict) -> None:
    specs = [spec for spec, _, _ in generated[space]]
    # the draw covers every branch of the generator
    assert any(s.levels for s in specs) and any(s.color == "luma" for s in specs)
    assert any(s.space_to_depth == 2 for s in specs) and any(s.skip == "add" for s in specs)
    if space.startswith("sr"):
        assert any(s.long_skip for s in specs) and any(s.upsample == "none" for s in specs)
    for i, (spec, state, path) in enumerate(generated[space]):
        net = load_module(path).build_model().eval()
        net.load_state_dict(map_state_dict(spec, state), strict=True)
        ref = build(spec)
        ref.load_state_dict(state)
        m = spec.size_multiple
        x = torch.rand(1, 3, 2 * m, 3 * m, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            np.testing.assert_allclose(net(x).numpy(), ref(x).numpy(), rtol=0, atol=1e-6,
                                       err_msg=spec.summary())


def test_generated_files_compile_and_pass_ruff(exported: Path, generated: dict) -> None:
    files = [exported / "model.py", exported / "train.py", exported / "reparam.py",
             *(p for v in generated.values() for _, _, p in v)]
    compiled = subprocess.run([sys.executable, "-m", "py_compile", *map(str, files)], capture_output=True, text=True,
                              check=False)
    assert compiled.returncode == 0, compiled.stderr
    lint = subprocess.run([str(RUFF), "check", "--isolated", "--no-cache", *map(str, files)],
                          capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("space", list_spaces())
def test_export_spec_writes_a_working_folder_for_each_space(space: str, tmp_path: Path) -> None:
    spec = next(s for s in space_specs(space) if s.levels and s.skip == "add")
    state = perturbed_state(spec, 0)
    m = spec.size_multiple
    size = (4 * m, 6 * m)
    out = export_spec(spec, state, tmp_path / "export", {
        "arch_id": spec.arch_id, "input_size": list(size), "latency_ms": 1.25, "latency_p90_ms": 1.5,
        "psnr_gain_db": 0.5, "device": "NVIDIA H100 80GB HBM3", "backend": "tensorrt",
        "train_config": {"loss": "l1+hfen:0.1", "patch_size": 48, "noise_sigma": 15.0},
    })
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    ref = build(spec)
    ref.load_state_dict(state)
    check_onnx(out, ref, size)
    train_py = (out / "train.py").read_text()
    assert 'LOSS = "l1+hfen:0.1"' in train_py and "NOISE_SIGMA = 15.0" in train_py
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temp folder left behind


@pytest.mark.slow
def test_train_py_denoise_luma_with_levels(tmp_path: Path) -> None:
    """The denoising path of train.py (noise per batch, noisy-input baseline) on a luma net with two levels."""
    spec = next(s for s in space_specs("denoise") if len(s.levels) == 2 and s.color == "luma")
    out = export_spec(spec, perturbed_state(spec, 0), tmp_path / "export",
                      {"input_size": [32, 32], "train_config": {"noise_sigma": 20.0}})
    data = write_pngs(tmp_path / "frames", 3, side=48)
    proc = run_clean(out / "train.py", "--data", str(data), "--steps", "2", "--patch", "16", "--batch-size", "2",
                     "--device", "cpu", "--out", "run", "--no-onnx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "validation PSNR" in proc.stdout and (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.slow
def test_train_py_reparam_resumes_and_saves_the_collapsed_plain_net(tmp_path: Path) -> None:
    """The search's --reparam kind is train.py's default; last.pt holds the branches, every other
    file model.py's plain net (the ONNX graph computes what the saved weights do)."""
    spec = ArchSpec(space="sr", scale=2, upsample="bilinear", color="rgb", space_to_depth=1,
                    head=(Conv(16, 3), Conv(16, 5), Conv(16, 1)), levels=(Level(16, (Conv(16, 3),), 3),),
                    tail=(Conv(16, 3),), skip="add")
    out = export_spec(spec, perturbed_state(spec, 0), tmp_path / "export",
                      {"input_size": [32, 32], "train_config": {"reparam": "ecb"}})
    assert 'REPARAM = "ecb"' in (out / "train.py").read_text() and (out / "reparam.py").is_file()
    data = write_pngs(tmp_path / "frames", 4)
    common = ["--data", str(data), "--patch", "16", "--batch-size", "2", "--device", "cpu", "--steps", "4"]
    first = run_clean(out / "train.py", *common, "--stop-at", "2", "--out", "a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    state = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert state["reparam"] == "ecb" and any(k.endswith("edge_weight") for k in state["model"])
    other = run_clean(out / "train.py", *common, "--out", "a", "--resume", "--reparam", "none", cwd=tmp_path)
    assert other.returncode == 2 and "was trained with --reparam ecb, not none" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    resumed = run_clean(out / "train.py", *common, "--out", "a", "--resume", "--no-onnx", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    straight = run_clean(out / "train.py", *common, "--out", "b", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    start = load_file(str(out / "model.safetensors"))
    assert set(b) == set(start) and all(torch.equal(a[k], b[k]) for k in b)
    assert any(not torch.equal(start[k], b[k]) for k in b)
    model = load_module(out / "model.py")
    net = model.load_weights(model.build_model(), tmp_path / "b" / "model.safetensors").eval()
    check_onnx(tmp_path / "b", net, (32, 32))
    bad = run_clean(out / "train.py", *common, "--reparam", "acb", "--out", "c", cwd=tmp_path)
    assert bad.returncode == 2 and "--reparam" in bad.stderr


@pytest.mark.parametrize("degradation", ["bicubic", "render", "render-jitter", "video"])
def test_train_py_degrades_inputs_as_the_search_did(tmp_path: Path, degradation: str) -> None:
    """The exported train.py makes each unpaired input exactly as nas.training.degrade.degrade did in the search."""
    from nas.training.degrade import degrade

    spec = ArchSpec(space="sr", scale=2, upsample="bicubic", color="rgb", space_to_depth=1, head=(Conv(16, 3),))
    out = export_spec(spec, perturbed_state(spec, 0), tmp_path / "export",
                      {"input_size": [32, 32], "degradation": degradation, "jpeg_quality": 70})
    assert f'DEGRADATION = "{degradation}"' in (out / "train.py").read_text()
    sys.path.insert(0, str(out))
    try:
        train = load_module(out / "train.py")
    finally:
        sys.path.remove(str(out))
    target = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 40, 48), dtype=np.uint8))
    for index in range(5):
        assert torch.equal(train.make_input(target, index), degrade(target, 2, degradation, 70, index)), index


@pytest.mark.slow
def test_train_py_trains_on_paired_frames(tmp_path: Path) -> None:
    """DIR/input + DIR/target with matching names: trained on the pairs as given; a missing partner is one line."""
    from PIL import Image

    spec = ArchSpec(space="sr", scale=2, upsample="bilinear", color="rgb", space_to_depth=1, head=(Conv(16, 3),))
    out = export_spec(spec, perturbed_state(spec, 0), tmp_path / "export", {"input_size": [32, 32]})
    targets = write_pngs(tmp_path / "frames" / "target", 4)
    (tmp_path / "frames" / "input").mkdir()
    for path in targets.iterdir():
        with Image.open(path) as im:
            im.resize((im.width // 2, im.height // 2), Image.NEAREST).save(tmp_path / "frames" / "input" / path.name)
    common = ["--data", str(tmp_path / "frames"), "--patch", "16", "--batch-size", "2", "--device", "cpu",
              "--steps", "2", "--no-onnx"]
    done = run_clean(out / "train.py", *common, "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 training and 1 validation images" in done.stdout
    next((tmp_path / "frames" / "target").iterdir()).unlink()
    lonely = run_clean(out / "train.py", *common, "--out", "run2", cwd=tmp_path)
    assert lonely.returncode == 2 and "has no partner in target/" in lonely.stderr
    assert len(lonely.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------- hostile and bad input
HOSTILE = [
    ("upsample", lambda d: d.update(upsample='bilinear"""\nimport os\nos.system("touch /tmp/pwned")\n"""')),
    ("color", lambda d: d.update(color="rgb'); __import__('os').system('id'); ('")),
    ("space", lambda d: d.update(space="sr\nimport os")),
    ("skip", lambda d: d.update(skip='add" + __import__("os").getcwd() + "')),
    ("head[0].op", lambda d: d["head"][0].update(op="conv'\nimport os")),
    ("head[0].width", lambda d: d["head"][0].update(width="16); import os; (")),
    ("__class__", lambda d: d.update(__class__="exec('1')")),
]


@pytest.mark.parametrize(("field", "mutate"), HOSTILE, ids=[f for f, _ in HOSTILE])
def test_hostile_arch_json_is_rejected_naming_the_field(field: str, mutate, run_copy: Path, tmp_path: Path) -> None:
    arch = run_copy / "archs" / best_row(run_copy)["arch_id"] / "arch.json"
    data = json.loads(arch.read_text())
    mutate(data)
    arch.write_text(json.dumps(data))
    before = sorted(tmp_path.iterdir())
    with pytest.raises(SpecError) as info:
        export_run(run_copy, tmp_path / "out")
    assert f"'{field}'" in str(info.value) and "\n" not in str(info.value)
    assert sorted(tmp_path.iterdir()) == before  # nothing written, no temp folder


def test_cli_reports_a_hostile_arch_json_in_one_line(run_copy: Path, tmp_path: Path, capsys) -> None:
    arch = run_copy / "archs" / best_row(run_copy)["arch_id"] / "arch.json"
    arch.write_text(json.dumps({**json.loads(arch.read_text()), "color": 'rgb"\nimport os'}))
    assert nas_main(["export", str(run_copy), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas export: error:") and err.count("\n") == 1 and "'color'" in err
    assert not (tmp_path / "out").exists()


def test_hostile_run_metadata_is_sanitized(run_copy: Path, tmp_path: Path, exported: Path) -> None:
    run = json.loads((run_copy / "run.json").read_text())
    evil = '"""\nimport os; os.system("id")\n"""'
    run["device"] = {"name": "GPU" + evil}
    run["backend"] = evil
    run["train_config"] = {**run["train_config"], "loss": f"l1{evil}", "patch_size": "48); import os"}
    (run_copy / "run.json").write_text(json.dumps(run))
    for train_json in [*(run_copy / "archs").glob("*/train.json"), *(run_copy / "archs").glob("*/final.json")]:
        train = json.loads(train_json.read_text())
        train["train_config"] = run["train_config"]
        train_json.write_text(json.dumps(train))
    out = export_run(run_copy, tmp_path / "out")
    for name in ("model.py", "train.py"):
        clean, dirty = ast.parse((exported / name).read_text()), ast.parse((out / name).read_text())
        assert [type(n) for n in dirty.body] == [type(n) for n in clean.body]
    assert "measured on  GPU import os os.system id (import os os.system id)" in (out / "model.py").read_text()
    assert 'LOSS = "l1"' in (out / "train.py").read_text() and "PATCH = 48 " in (out / "train.py").read_text()
    assert "not one train.py knows" in (out / "README.md").read_text()


def test_bad_runs_and_targets_are_refused(run_copy: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(UsageError, match="not a run dir"):
        export_run(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(UsageError, match="no trial 9999"):
        export_run(run_copy, tmp_path / "out", trial=9999)
    with open(run_copy / "trials.csv", newline="") as fh:
        untrained = next(r for r in csv.DictReader(fh) if r["trained"] == "False")
    with pytest.raises(UsageError, match="no trained weights"):
        export_run(run_copy, tmp_path / "out", trial=int(untrained["number"]))
    assert nas_main(["export", str(run_copy), "--trial", "9999", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "out").exists()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        export_run(run_copy, busy)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]

    # a previous untouched export of the same arch is replaced; once the user adds or edits a file, it is not
    out = export_run(run_copy, tmp_path / "again")
    assert export_run(run_copy, out) == out
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        export_run(run_copy, out)
    (out / "notes.txt").unlink()
    (out / "model.py").write_text((out / "model.py").read_text() + "# my edit\n")
    with pytest.raises(UsageError, match="not empty"):
        export_run(run_copy, out)
    assert (out / "model.py").read_text().endswith("# my edit\n")


def test_weights_that_do_not_fit_the_spec_are_refused(run_copy: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    arch_id = best_row(run_copy)["arch_id"]
    spec = load_spec(str(run_copy / "archs" / arch_id / "arch.json"))
    other = next(s for s in get_space("sr2x").references().values() if s.arch_id != arch_id)
    for name in ("weights.safetensors", "final_weights.safetensors"):  # the winner may be a finalist
        save_file(build(other).state_dict(), str(run_copy / "archs" / arch_id / name))
    with pytest.raises(UsageError, match="do not fit"):
        export_run(run_copy, tmp_path / "out")
    state = perturbed_state(spec, 0)
    state["out.weight"][0] = float("nan")
    with pytest.raises(UsageError, match="NaN"):
        export_spec(spec, state, tmp_path / "out", {})
    assert not (tmp_path / "out").exists()
