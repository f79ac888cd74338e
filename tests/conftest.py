"""Shared fixtures: a real PostgreSQL server, and a real tiny search run once per session."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tiny import TINY_ARGS, run_nas

# Every worker, and every process a test starts, runs torch on one thread: with torch's default (one per core) in
# each of the workers, the suite spent 1595 CPU-seconds against 1145 with one (most likely threads spinning while a
# sibling waited for a core the other workers held; reports/test_suite.md, "Fifth session"). Latency backends set
# their own thread counts.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _pg_bindir() -> str | None:
    """Directory holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(found)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for path in reversed(candidates):
        if os.path.exists(os.path.join(path, "initdb")) and os.path.exists(os.path.join(path, "pg_ctl")):
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL server started by the tests: its URL, and ``restart()`` (pg_ctl restart)."""

    def __init__(self, url: str, restart: Callable[[], None]) -> None:
        self.url = url
        self.restart = restart


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server (initdb + pg_ctl, trust auth, a free local port); stop and
    delete it afterwards. As root, the server runs as the ``postgres`` user (initdb refuses root)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql to run these tests")
    as_root = os.geteuid() == 0
    prefix: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = tempfile.mkdtemp(prefix="nas-pg-")
    if as_root:
        shutil.chown(base, "postgres", "postgres")
    data, log = os.path.join(base, "data"), os.path.join(base, "server.log")
    port = _free_port()
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"

    def run(*cmd: str) -> None:
        proc = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")

    def restart() -> None:
        run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60", "-m", "fast", "-o", options,
            "restart")

    run(os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60", "-o", options, "start")
    try:
        yield PostgresServer(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", restart)
    finally:
        subprocess.run([*prefix, os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def worker_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Each test process (each xdist worker) gets its own NAS_CACHE_DIR, like a machine of its own: its own
    device lock, default latency database and predictor files. With the user's cache dir shared, every search of
    every worker took one device lock for each training and measurement, and waited for the others' (a search in
    a pruning test waited 45 of its 67 s; reports/test_suite.md, "Sixth session"); nothing is written to the
    user's cache either. A test that needs another sets its own (monkeypatch or a subprocess's environment)."""
    path = tmp_path_factory.mktemp("nas_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NAS_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A SQLAlchemy URL to the ``postgres`` database of the session's PostgreSQL server."""
    return postgres_server.url


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict:
    """A real tiny `nas search --json`: its run dir, latency database URL and JSON summary. Under xdist the
    first worker to need it runs it and the others wait for it and read it (pytest-xdist's recipe for a
    session fixture run once): the search is the suite's most expensive fixture."""
    from filelock import FileLock

    shared = worker_id != "master"
    root = tmp_path_factory.getbasetemp().parent / "tiny_search" if shared else tmp_path_factory.mktemp("tiny_search")
    with FileLock(f"{root}.lock") if shared else contextlib.nullcontext():
        done = root / "fixture.json"
        if not done.exists():
            root.mkdir(parents=True, exist_ok=True)
            db = f"sqlite:///{root / 'latency.db'}"
            proc = run_nas("search", *TINY_ARGS, "--run-dir", str(root / "run"), "--latency-db", db, "--json")
            assert proc.returncode == 0, proc.stderr
            done.write_text(json.dumps({"latency_db": db, "stdout": proc.stdout, "stderr": proc.stderr}))
    saved = json.loads(done.read_text())
    return {"run_dir": root / "run", "latency_db": saved["latency_db"], "summary": json.loads(saved["stdout"]),
            "stdout": saved["stdout"], "stderr": saved["stderr"], "root": root}


@pytest.fixture(scope="session")
def tiny_run_dir(tiny_search: dict) -> Path:
    """The run dir of the session's tiny search (run.json, trials.csv, archs/, report.html, best/)."""
    return tiny_search["run_dir"]


# The files that take minutes (their durations in reports/test_suite.md), in the order the workers start them. Under
# xdist each file goes whole to one worker in collection order (pyproject.toml turns off xdist's reordering by test
# count): each worker starts one of the first three and takes the next file when its own is nearly done. The first
# starts the session's tiny search at once, the next two need none, and the files that need it come later: no
# worker waits for it while there is other work.
LONG_FILES = ("test_export.py", "test_bench.py", "test_agents.py", "test_pruning.py", "test_cluster.py",
              "test_faults.py", "test_report.py", "test_search.py", "test_scaleout.py", "test_baseline.py",
              "test_agent_graphs.py", "test_bad_input.py", "test_int8.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect LONG_FILES first, in that order; every file keeps its tests together and in order (a stable sort)."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))


def pytest_itemcollected(item: pytest.Item) -> None:
    """A test that needs the session's tiny search is slow: the search trains a dozen nets."""
    if set(getattr(item, "fixturenames", ())) & {"tiny_search", "tiny_run_dir"}:
        item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def fresh_quiet_wait() -> None:
    """Each test starts with a waiter that remembers no busy machine (latency_db.windows.QuietWait): a futile
    wait in one test must not skip the waits another test checks."""
    from latency_db.windows import wait_for_quiet

    wait_for_quiet.forget()
