"""train.py (the shipped template with the search's settings) and README.md of an export."""
from __future__ import annotations

from pathlib import Path

from nas.export.info import (
    ExportInfo,
    fmt_number,
)
from nas.export.model_code import TASK_TITLE, numbers_doc
from search_spaces import ArchSpec

TEMPLATES = Path(__file__).with_name("templates")


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
        f"LR_FAN_IN = {int(t['lr_fan_in'])}  "
        f"# conv weights with a larger fan-in train at LR * sqrt(LR_FAN_IN / fan-in)\n"
        f"ROTATE = {bool(t['rotate'])}\n"
        f'REPARAM = "{t["reparam"]}"  # each conv trains as this re-parameterized block (reparam.py); '
        "weights are saved collapsed\n"
        f"ADD_NOISE = {bool(t['add_noise'])}  # denoising: unpaired inputs get Gaussian noise of NOISE_SIGMA\n"
        f'DEGRADATION = "{t["degradation"]}"  # how an unpaired image becomes an input, as in the search\n'
        f"JPEG_QUALITY = {int(t['jpeg_quality'])}  # DEGRADATION video\n"
        f'PRECISION = "{info.precision}"  # int8: the training ends quantization-aware and writes the QDQ graph '
        "model_int8.onnx\n"
    )
    return head + begin + settings + end + tail


def readme_source(spec: ArchSpec, info: ExportInfo) -> str:
    """README.md: the numbers, how to use and train the network, how to build and time a TensorRT engine."""
    h, w = info.input_size
    s = spec.scale
    title = TASK_TITLE[spec.space].format(s=s)
    oh, ow = h * s, w * s
    trial = f"trial {info.trial} of a `nas search`" if info.trial is not None else "a network"
    budget = f" (budget {fmt_number(info.budget_ms, unit=' ms')})" if info.budget_ms is not None else ""
    steps = info.train["steps"]
    short = f"{steps} steps" if steps else "a short run"
    loss_note = f"\nNote: {info.loss_note}.\n" if info.loss_note else ""
    numbers = "\n".join(f"    {line}" for line in numbers_doc(spec, info))
    return f"""# {title} network `{spec.arch_id[:12]}`

{trial.capitalize()}{budget}, exported with `nas export`.

{numbers}
    architecture {spec.summary()}

The latency is the untrained network's (speed does not depend on the weights), measured by the search
on the device above. The quality gain is after the search's training ({short}, loss `{info.loss}`; a finalist's
longer training when it won as one): a full training (below) should gain more.

## Files

- `model.py`: the network as one plain `nn.Module` (needs only PyTorch), `build_model()`, `load_weights()`
- `model.safetensors`, `model.pt`: the search's trained weights (the `.pt` loads with `weights_only=True`)
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
if spec.space == "sr" else "Gaussian noise of " + fmt_number(info.train["noise_sigma"], ".1f")
+ " 8-bit levels, clipped"}),
same loss (`{info.loss}`), Adam with a linear warm-up then cosine decay, random \
{info.train["patch_size"]}x{info.train["patch_size"]}
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
""" + (int8_doc(info) if info.precision == "int8" else "")


def int8_doc(info: ExportInfo) -> str:
    """The README's int8 section: the QDQ graph the search scored, QAT in train.py, TensorRT and ONNX Runtime."""
    h, w = info.input_size
    return f"""
## int8

The search measured and scored this network in int8: `model_int8.onnx` is its QDQ graph
(QuantizeLinear/DequantizeLinear around every conv: per-channel symmetric weights in 7 bits, uint8
activations calibrated on training patches; the classical base, the residual's sum and the output in
fp32; fp32 input and output, 1x3x{h}x{w} and any other size).
The latency and the gain above are this graph's, as ONNX Runtime runs it on the CPU.
`model_fp32.onnx` and `model.onnx` are the float graphs of the same weights.

`python train.py ...` (above) ends with quantization-aware training: the last `--qat-steps` steps
(default a fifth of `--steps`) train the plain net with fake-quantized weights and activations
(straight-through gradients, PyTorch only), and it writes `model_int8.onnx` (`--qat-steps 0`: float only).

```bash
# ONNX Runtime (CPU): the QDQ graph runs on its int8 kernels with the default graph optimizations
python -c "import onnxruntime as ort, numpy as np; s = ort.InferenceSession('model_int8.onnx'); \\
print(s.run(None, {{'input': np.random.rand(1, 3, {h}, {w}).astype(np.float32)}})[0].shape)"
# TensorRT: explicit quantization (the Q/DQ nodes) in a strongly typed network; no --int8 flag.
# TensorRT takes only symmetric activations (zero point 0): re-export for it with
# `python train.py ... --qat-steps N --trt-int8` (int8 symmetric activations), then
trtexec --onnx=model_int8.onnx --saveEngine=model_int8.engine --stronglyTyped
```
"""
