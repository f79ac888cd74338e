"""The flags several commands share, each defined once: same spelling, default and help everywhere."""

from __future__ import annotations

import argparse
import re

PROTOCOL_CHOICES = ("fast", "full", "fast-v3", "fast-v2", "full-v2", "fast-v1", "full-v1")
BACKEND_CHOICES = ("auto", "tensorrt", "torch-cuda", "onnxruntime", "torch-cpu")
DB_HELP = ("latency database (and training cache): SQLite path/URL or postgresql://... "
           "(default $NAS_LATENCY_DB, else latency.db in the user cache dir)")


def add_json(p: argparse.ArgumentParser, what: str = "one JSON object") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} on stdout; no progress")


def add_latency_db(p: argparse.ArgumentParser, note: str = "") -> None:
    p.add_argument("--latency-db", metavar="URL", help=DB_HELP + note)


def add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="auto", metavar="B",
                   help=f"one of {', '.join(BACKEND_CHOICES)} (default auto: the first available in that order)")


def add_protocol(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=PROTOCOL_CHOICES, default="fast",
                   help="timing protocol: fast screening (default) or the full reference protocol")


AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def agent_name(text: str) -> str:
    """argparse type: an agent (target) name: letters, digits, '.', '_', '-', at most 64 characters."""
    if not AGENT_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"an agent name is 1-64 letters, digits, '.', '_' or '-' (starting with a "
                                         f"letter or digit), got {text!r}")
    return text


def add_precision(p: argparse.ArgumentParser) -> None:
    """--precision: fp32, fp16, int8, or a comma list that makes precision a searched choice."""
    p.add_argument("--precision", metavar="P", help="fp32, fp16, int8 (a QDQ graph: per-channel int8 weights), or a "
                   "comma list such as fp32,int8: one more choice per candidate (default: the backend's own, fp32 on "
                   "CPUs, fp16 on GPUs). onnxruntime offers fp32 and int8; tensorrt fp32, fp16 and int8; torch-cuda "
                   "fp32 and fp16; torch-cpu fp32")


def add_input_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-size", metavar="HxW",
                   help="low-resolution input frame (default 540x960 on GPU backends, 135x240 on CPU ones)")


def add_task(p: argparse.ArgumentParser, choices: tuple[str, ...] | None = None,
             what: str = "search space / task") -> None:
    """--task, default sr2x; ``choices`` narrows it (the bench takes super-resolution tasks only)."""
    listed = ", ".join(choices) if choices else "nas spaces lists them"
    p.add_argument("--task", default="sr2x", choices=choices, help=f"{what} (default sr2x; {listed})")


def add_training(p: argparse.ArgumentParser, steps_default: str) -> None:
    """--train-steps and --reparam: how each candidate is short-trained."""
    p.add_argument("--train-steps", type=int, help=f"short-training steps per candidate (default: {steps_default})")
    p.add_argument("--reparam", metavar="KIND",
                   help="train each conv as a re-parameterized block, collapsed to a plain conv after training: "
                   "none, linear (SESR) or ecb (ECBSR) (default ecb, reports/reparam.md)")
    p.add_argument("--train-dtype", choices=("auto", "fp32", "bf16"), default="auto",
                   help="the training forward pass's compute type: bf16 autocast (channels-last) or fp32; auto (the "
                   "default): bf16 where the training device computes it natively (AVX-512 BF16, AMX, a bf16 GPU), "
                   "reports/training_speed.md")


def add_finalists(p: argparse.ArgumentParser) -> None:
    """--finalists and --final-steps: how many of the best short-trained candidates are trained longer, how long."""
    from nas.search.config import DEFAULT_FINALISTS, FINAL_FACTOR

    p.add_argument("--finalists", type=int, default=DEFAULT_FINALISTS, metavar="K",
                   help=f"after the search, train the best K candidates within the (verified) budget --final-steps "
                   f"steps and name the best after that training the winner (default {DEFAULT_FINALISTS}; 0: off, "
                   "the best after the short training wins)")
    p.add_argument("--final-steps", type=int, metavar="N",
                   help=f"training steps of the finalists (default {FINAL_FACTOR}x --train-steps; from scratch, "
                   "cached like any training)")


def add_shared_study(p: argparse.ArgumentParser, storage_help: str, study_help: str) -> None:
    """--storage and --study: a study shared through an Optuna storage."""
    p.add_argument("--storage", metavar="URL", help=storage_help)
    p.add_argument("--study", metavar="NAME", help=study_help)


def add_baseline(p: argparse.ArgumentParser) -> None:
    """--baseline NAME=model.onnx, repeatable: the user's own network beside the search's (nas/baseline/)."""
    from nas.baseline.load import baseline_arg

    p.add_argument("--baseline", type=baseline_arg, action="append", default=[], metavar="NAME=MODEL.onnx",
                   help="your own network as a baseline (repeatable): an ONNX graph, RGB or luma (Y) in and out, "
                   "fp32 or fp16; timed with the search's protocol and shown as you have it and retrained with the "
                   "search's short training (docs/cli.md)")
