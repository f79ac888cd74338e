"""Bad input: one clear line on stderr, exit code 2, and every file that was there is unchanged.

Each case runs the real CLI in a subprocess against a workspace holding a pre-existing run dir of
another study, a valid latency database, a database of a newer schema, a file that is not a
database, image folders and arch.json files. The workspace is hashed before and after.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny import NO_FINALISTS

PASSWORD = "s3cretPa55"
SEARCH = ["search", "--input-size", "32x48", "--trials", "1", "--train-steps", "5", "--backend", "onnxruntime",
          "--no-report", "--no-export", *NO_FINALISTS]


def run_nas(*args: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    """The real ``nas`` CLI in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, check=False,
                          timeout=300, env={**os.environ, **env_extra})


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _png(path: Path, h: int, w: int, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files a user already has; no case may change any of them."""
    from latency_db import open_store
    from search_spaces import get_space

    ws = tmp_path_factory.mktemp("bad_input") / "ws"
    ws.mkdir()
    store = open_store(str(ws / "latency.db"))
    store.close()
    newer = ws / "newer.db"
    open_store(str(newer)).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE nas_meta SET value = '99' WHERE name = 'schema_version'")
    conn.close()
    (ws / "not_a_db.db").write_bytes(b"this is a text file, not a database\n" * 4)

    other = ws / "other_run"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"study": "someone-elses-study", "summary": None}) + "\n")
    (other / "trials.csv").write_text("number,state,arch_id\n0,COMPLETE,abc\n")
    (ws / "stray").mkdir()
    (ws / "stray" / "notes.txt").write_text("my notes\n")

    (ws / "empty").mkdir()
    (ws / "corrupt").mkdir()
    _png(ws / "corrupt" / "a.png", 96, 96, 0)
    (ws / "corrupt" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)
    (ws / "small").mkdir()
    for i in range(3):
        _png(ws / "small" / f"f{i}.png", 8, 8, i)
    (ws / "a_file").write_text("a file where a folder is expected\n")
    for side, names in (("input", ("a",)), ("target", ("a", "b"))):
        (ws / "pairs" / side).mkdir(parents=True)
        for i, name in enumerate(names):
            _png(ws / "pairs" / side / f"{name}.png", 48 if side == "input" else 96, 64 if side == "input" else 128, i)

    tiny = get_space("sr2x").references()["tiny"].to_dict()
    hostile = {
        "unknown_field.json": json.dumps({**tiny, "exec": "rm -rf /"}),
        "not_json.json": "this is not JSON",
        "not_utf8.json": b"\xff\xfe\x00\x01garbage",
        "nan.json": json.dumps(tiny).replace('"width": 16', '"width": NaN'),
        "huge_width.json": json.dumps(_with(tiny, "width", 10**9)),
        "negative_kernel.json": json.dumps(_with(tiny, "kernel", -3)),
        "array.json": "[1, 2, 3]",
        "deep.json": "[" * 100_000 + "]" * 100_000,
    }
    for name, body in hostile.items():
        path = ws / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return ws


def _with(spec: dict, field: str, value: int) -> dict:
    out = copy.deepcopy(spec)
    out["head"][0][field] = value
    return out


# (id, argv with {ws} for the workspace, substring the one error line must hold)
TABLE = [
    ("budget-zero", [*SEARCH, "--budget-ms", "0"], "--budget-ms"),
    ("budget-negative", [*SEARCH, "--budget-ms=-1"], "positive"),
    ("budget-nan", [*SEARCH, "--budget-ms", "nan"], "positive, finite"),
    ("budget-inf", [*SEARCH, "--budget-ms", "inf"], "positive, finite"),
    ("budget-not-a-number", [*SEARCH, "--budget-ms", "four"], "must be a number of milliseconds"),
    ("budget-missing", SEARCH, "--budget-ms"),
    ("unknown-task", [*SEARCH, "--budget-ms", "1", "--task", "sr5x"], "unknown task or space 'sr5x'"),
    ("unknown-backend", [*SEARCH, "--budget-ms", "1", "--backend", "tpu"], "unknown backend 'tpu'"),
    ("input-size-malformed", [*SEARCH, "--budget-ms", "1", "--input-size", "32by48"], "HxW"),
    ("input-size-zero", [*SEARCH, "--budget-ms", "1", "--input-size", "0x48"], "out of range"),
    ("trials-zero", [*SEARCH, "--budget-ms", "1", "--trials", "0"], "--trials must be at least 1"),
    ("timeout-zero", [*SEARCH, "--budget-ms", "1", "--timeout", "0"], "--timeout must be a positive number"),
    ("timeout-nan", [*SEARCH, "--budget-ms", "1", "--timeout", "nan"], "--timeout must be a positive number"),
    ("reparam-unknown", [*SEARCH, "--budget-ms", "1", "--reparam", "acb"],
     "--reparam must be one of none, linear, ecb, got 'acb'"),
    ("trials-not-int", [*SEARCH, "--budget-ms", "1", "--trials", "many"], "--trials"),
    ("storage-unreachable", [*SEARCH, "--budget-ms", "1", "--storage",
                             f"postgresql://nas:{PASSWORD}@127.0.0.1:1/nas"], "cannot open --storage"),
    ("storage-wrong-scheme", [*SEARCH, "--budget-ms", "1", "--storage",
                              f"nosuchdb://nas:{PASSWORD}@localhost/nas"], "cannot open --storage"),
    ("storage-sqlite", [*SEARCH, "--budget-ms", "1", "--storage", "sqlite:///{ws}/study.db"], "journal"),
    ("latency-db-unreachable", [*SEARCH, "--budget-ms", "1", "--latency-db",
                                f"postgresql://nas:{PASSWORD}@127.0.0.1:1/nas"], "cannot open latency database"),
    ("latency-db-not-a-db", [*SEARCH, "--budget-ms", "1", "--latency-db", "{ws}/not_a_db.db"],
     "is not a SQLite database"),
    ("latency-db-newer-schema", [*SEARCH, "--budget-ms", "1", "--latency-db", "{ws}/newer.db"],
     "schema version 99"),
    ("run-dir-other-study", [*SEARCH, "--budget-ms", "1", "--run-dir", "{ws}/other_run"],
     "already holds study 'someone-elses-study'"),
    ("run-dir-not-a-run-dir", [*SEARCH, "--budget-ms", "1", "--run-dir", "{ws}/stray"], "not a nas run dir"),
    ("data-empty", [*SEARCH, "--budget-ms", "1", "--data", "{ws}/empty"], "no .png/.jpg/.jpeg files"),
    ("data-missing", [*SEARCH, "--budget-ms", "1", "--data", "{ws}/no_such_folder"], "folder does not exist"),
    ("data-not-a-folder", [*SEARCH, "--budget-ms", "1", "--data", "{ws}/a_file"], "not a folder"),
    ("data-corrupt-file", [*SEARCH, "--budget-ms", "1", "--data", "{ws}/corrupt"], "cannot read image"),
    ("data-too-small", [*SEARCH, "--budget-ms", "1", "--data", "{ws}/small"], "smaller than"),
    ("pairs-missing-partner", [*SEARCH, "--budget-ms", "1", "--data", "{ws}/pairs"],
     "target/b.png has no partner in input/"),
    ("degradation-unknown", [*SEARCH, "--budget-ms", "1", "--degradation", "blur"], "--degradation must be one of"),
    ("jpeg-quality-zero", [*SEARCH, "--budget-ms", "1", "--degradation", "video", "--jpeg-quality", "0"],
     "--jpeg-quality must be an integer from 1 to 95"),
    ("enhance-without-pairs", [*SEARCH, "--budget-ms", "1", "--task", "enhance"], "--task enhance learns"),
    ("min-shift-nan", [*SEARCH, "--budget-ms", "1", "--min-shift-consistency", "nan"], "--min-shift-consistency"),
    ("arch-unknown-field", ["latency", "{ws}/unknown_field.json"], "unknown field 'exec'"),
    ("arch-not-json", ["latency", "{ws}/not_json.json"], "not valid JSON"),
    ("arch-not-utf8", ["latency", "{ws}/not_utf8.json"], "not UTF-8"),
    ("arch-nan", ["latency", "{ws}/nan.json"], "NaN"),
    ("arch-huge-width", ["latency", "{ws}/huge_width.json"], "head[0].width"),
    ("arch-negative-kernel", ["latency", "{ws}/negative_kernel.json"], "head[0].kernel"),
    ("arch-not-an-object", ["latency", "{ws}/array.json"], "must be a JSON object"),
    ("arch-missing", ["latency", "{ws}/no_such.json"], "cannot read arch file"),
    ("arch-deeply-nested", ["latency", "{ws}/deep.json"], "arch JSON is nested too deeply"),
]
CASES = [pytest.param(argv, expected, id=case) for case, argv, expected in TABLE]
ARCH_FLAGS = ["--backend", "onnxruntime", "--input-size", "32x48"]


@pytest.mark.parametrize(("argv", "expected"), CASES)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(workspace: Path, tmp_path: Path, argv: list[str],
                                                          expected: str) -> None:
    args = [a.replace("{ws}", str(workspace)) for a in argv]
    if args[0] == "latency":
        args += [*ARCH_FLAGS, "--latency-db", str(workspace / "latency.db")]
    elif "--latency-db" not in args:
        args += ["--latency-db", str(workspace / "latency.db")]
    new_run_dir = tmp_path / "new_run"
    if "--run-dir" not in args and args[0] == "search":
        args += ["--run-dir", str(new_run_dir)]
    before = snapshot(workspace)

    proc = run_nas(*args, env_extra={"NAS_CACHE_DIR": str(tmp_path / "cache")})

    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"nas {args[0]}: error: "), lines[0]
    assert expected in lines[0]
    assert PASSWORD not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    after = snapshot(workspace)
    assert {k: after.get(k) for k in before} == before, "a pre-existing file changed"
    assert not new_run_dir.exists(), "a run dir was created for a run that was refused"
