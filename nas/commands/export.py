"""``nas export RUN_DIR [--trial N] --out DIR``: a searched network as plain PyTorch training code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas.commands import COMMANDS, flags
from nas.commands.report import add_shared_study_args, resolve_run_dir


@COMMANDS.register("export")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a trained trial as standalone code (model.py, train.py, weights, ONNX)",
        description="Export one trained trial of a search run (default: the best within the budget) as a "
        "folder that needs only PyTorch: model.py, train.py, arch.json, weights, model.onnx (fp16, for "
        "TensorRT), model_fp32.onnx and a README with the numbers and the trtexec commands.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", nargs="?",
                   help="the --run-dir of a `nas search` (or --storage URL --study NAME for a shared study)")
    add_shared_study_args(p)
    p.add_argument("--trial", type=int, default=None, metavar="N",
                   help="trial number from trials.csv (default: the best trained trial within the budget)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder to create; must not exist or be empty (nas export never overwrites)")
    flags.add_json(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from nas.export import MANIFEST, export_run

    with tempfile.TemporaryDirectory(prefix="nas-study-") as scratch:
        run_dir = resolve_run_dir(args, Path(scratch) / "run")
        out = export_run(run_dir, args.out, args.trial)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    if args.json:
        print(json.dumps({"out": str(out), **{k: manifest[k] for k in (
            "arch_id", "trial", "latency_ms", "latency_p90_ms", "psnr_gain_db", "input_size", "files")}}))
        return 0
    gain = manifest["psnr_gain_db"]
    latency = manifest["latency_ms"]
    print(f"exported trial {manifest['trial']} ({manifest['summary']}) to {out}")
    print(f"  latency {'n/a' if latency is None else f'{latency:.3f} ms'} median, "
          f"gain {'n/a' if gain is None else f'{gain:+.3f} dB'} after the search's short training")
    print(f"  train it: cd {out} && python train.py --data FRAMES_DIR")
    return 0
