"""Does training on the user's degradation pay? Two real searches on point-sampled (render) frames.

Runs ``nas search`` twice with the same seed, budget and trials, one trained on ``--degradation
render`` and one on the default ``bicubic``, sharing one fresh latency/training database, then
validates both winners on held-out scikit-image photos the searches never saw (camera, coins, moon,
page, text, brick, grass, gravel, clock as grey RGB, and colorwheel), point-sampled like a game
frame (and, for context, bicubic-downscaled). Prints a markdown table and writes proof.json.

Usage (on a quiet machine): flock /tmp/nas-cpu-bench.lock python benchmarks/degradation_proof.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from nas.training.data import load_data, val_pairs
from nas.training.train import stability, validate
from search_spaces import build, load_spec

HELD_OUT = ("camera", "coins", "moon", "page", "text", "brick", "grass", "gravel", "clock", "colorwheel")


def write_held_out(folder: Path) -> None:
    """The held-out photos as PNG (grey ones replicated to RGB): not in the search's training or validation."""
    import skimage.data as sd

    folder.mkdir(parents=True, exist_ok=True)
    for name in HELD_OUT:
        arr = np.asarray(getattr(sd, name)(), dtype=np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        Image.fromarray(arr[:, :, :3]).save(folder / f"{name}.png")


def search(out: Path, degradation: str, args: argparse.Namespace) -> dict[str, Any]:
    """One real ``nas search`` run (the CLI, as a user runs it); its --json summary."""
    cmd = [sys.executable, "-m", "nas.cli", "search", "--budget-ms", str(args.budget_ms), "--trials", str(args.trials),
           "--seed", str(args.seed), "--backend", args.backend, "--degradation", degradation,
           "--run-dir", str(out / degradation), "--latency-db", str(out / "nas.db"), "--no-export", "--json"]
    print("$ " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"search with --degradation {degradation} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def evaluate(run_dir: Path, trial_arch: str, held_out: Path) -> dict[str, Any]:
    """The winner's PSNR, gain over bicubic upsampling and shift consistency on the held-out photos."""
    folder = run_dir / "archs" / trial_arch
    spec = load_spec(str(folder / "arch.json"))
    net = build(spec)
    net.load_state_dict(load_file(str(folder / "weights.safetensors")))
    cpu = torch.device("cpu")
    out: dict[str, Any] = {"summary": spec.summary()}
    for degradation in ("render", "bicubic"):
        data = load_data("sr", spec.scale, 48, val_data=held_out, degradation=degradation)
        pairs = val_pairs(data)
        v = validate(net, pairs, "sr", spec.scale, cpu)
        shift_db, _ = stability(net, pairs, "sr", spec.scale, False, cpu)
        out[degradation] = {"psnr_db": v.psnr_db, "bicubic_psnr_db": v.bicubic_psnr_db, "gain_db": v.gain_db,
                            "ssim": v.ssim, "shift_consistency_db": shift_db}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the two run dirs, the database and proof.json")
    ap.add_argument("--budget-ms", type=float, default=8.0)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="onnxruntime")
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"--out {args.out} is not empty: pick a new folder (the proof uses a fresh database)")
    held_out = args.out / "held_out"
    write_held_out(held_out)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "held_out": list(HELD_OUT)}
    for degradation in ("render", "bicubic"):
        summary = search(args.out, degradation, args)
        best = summary["best"]
        results[degradation] = {"search": summary,
                                "winner": evaluate(args.out / degradation, best["arch_id"], held_out)}
    (args.out / "proof.json").write_text(json.dumps(results, indent=1) + "\n")
    print("| trained on | winner | latency (ms) | search val gain (dB) | held-out render: PSNR | gain over bicubic "
          "| shift consistency | held-out bicubic: PSNR | gain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for degradation in ("render", "bicubic"):
        best, w = results[degradation]["search"]["best"], results[degradation]["winner"]
        r, b = w["render"], w["bicubic"]
        print(f"| {degradation} | trial {best['trial']}: {w['summary']} | {best['latency_ms']:.2f} | "
              f"{best['psnr_gain_db']:+.2f} | {r['psnr_db']:.2f} | {r['gain_db']:+.2f} | "
              f"{r['shift_consistency_db']:.1f} | {b['psnr_db']:.2f} | {b['gain_db']:+.2f} |")
    margin = results["render"]["winner"]["render"]["psnr_db"] - results["bicubic"]["winner"]["render"]["psnr_db"]
    print(f"\nmargin on held-out render frames (render-trained minus bicubic-trained winner): {margin:+.2f} dB")


if __name__ == "__main__":
    main()
