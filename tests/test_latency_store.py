"""Store contract, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from latency_db import LatencyKey, LatencyStore, StoreError, Workload
from latency_db.fingerprint import canonical
from latency_db.schema import SCHEMA_VERSION


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a new SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'latency.db'}"
        return
    server = request.getfixturevalue("postgres_url")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield server.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


KEY = LatencyKey(
    arch_id="a" * 64, workload=Workload(height=135, width=240, scale=2, io_dtype="fp32"), precision="fp32",
    backend="onnxruntime", backend_version="1.32.0", builder=canonical({"threads": 2}),
    device=canonical({"kind": "cpu", "cpu_model": "X", "threads": 2}), protocol="cpu-fast-v1",
)


def row(median: float = 1.5, error: str | None = None) -> dict:
    return {
        "summary": "test", "device": "X (2 threads)", "status": "error" if error else "ok", "error": error,
        "median_ms": None if error else median, "p10_ms": 1.0, "p90_ms": 2.0, "p99_ms": 2.5, "mean_ms": 1.6,
        "cov": 0.01, "n_samples": 3, "samples_json": json.dumps([1.0, 1.5, 2.0]), "unstable": False,
        "attempts": 1, "build_s": 0.2, "roofline_ms": 0.5, "host": "h", "measured_at": "2026-01-01T00:00:00+00:00",
        "fingerprint_json": "{}", "details_json": "{}",
    }


def test_insert_get_and_ignore(store_url: str) -> None:
    store = LatencyStore(store_url)
    assert store.get(KEY) is None
    assert store.put(KEY, row(1.5)) is True
    got = store.get(KEY)
    assert got is not None and got["median_ms"] == 1.5 and json.loads(got["samples_json"]) == [1.0, 1.5, 2.0]
    assert got["height"] == 135 and got["backend"] == "onnxruntime" and got["unstable"] is False
    assert store.put(KEY, row(9.9)) is False          # insert-or-ignore: the first row stays
    assert store.get(KEY)["median_ms"] == 1.5
    assert store.count() == 1
    store.close()


def test_failure_row_keeps_error_text(store_url: str) -> None:
    store = LatencyStore(store_url)
    store.put(KEY, row(error="engine build failed: no tactic"))
    got = store.get(KEY)
    assert got["status"] == "error" and got["error"] == "engine build failed: no tactic" and got["median_ms"] is None
    assert store.stats()[0]["errors"] == 1


def _variants() -> Iterator[tuple[str, LatencyKey]]:
    for f in dataclasses.fields(LatencyKey):
        if f.name == "workload":
            continue
        value = getattr(KEY, f.name)
        changed = canonical({**json.loads(value), "extra": 1}) if f.name in ("builder", "device") else value + "x"
        yield f.name, dataclasses.replace(KEY, **{f.name: changed})
    w = KEY.workload
    for name, changed in {"height": 136, "width": 241, "scale": 3, "batch": 2, "channels": 1,
                          "io_dtype": "fp16"}.items():
        yield f"workload.{name}", dataclasses.replace(KEY, workload=dataclasses.replace(w, **{name: changed}))
    assert "layout" in {f.name for f in dataclasses.fields(Workload)}  # only one layout exists today


def test_every_key_field_matters(store_url: str) -> None:
    store = LatencyStore(store_url)
    store.put(KEY, row())
    names = []
    for name, variant in _variants():
        names.append(name)
        assert variant.digest != KEY.digest, name
        assert store.get(variant) is None, f"changing {name} still hit the cache"
    assert len(names) == 13


def _insert_same_key(url: str, barrier: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    barrier.wait()
    store = LatencyStore(url)  # also races the schema creation on a new database
    out.put(store.put(KEY, row()))


def test_four_processes_insert_the_same_key(store_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_insert_same_key, args=(store_url, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    results = sorted(out.get(timeout=5) for _ in procs)
    assert results == [False, False, False, True]
    assert LatencyStore(store_url).count() == 1


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite") else None


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0])
def test_schema_mismatch_is_a_clear_error_and_changes_nothing(store_url: str, version: int) -> None:
    store = LatencyStore(store_url)
    store.put(KEY, row())
    with store.engine.connect() as conn:
        conn.execute(text("UPDATE nas_meta SET value = :v WHERE name = 'schema_version'"), {"v": str(version)})
        conn.commit()
    store.close()
    path = _sqlite_path(store_url)
    before = path.read_bytes() if path else None
    with pytest.raises(StoreError, match=f"schema version {version}, this nas reads version {SCHEMA_VERSION}") as exc:
        LatencyStore(store_url)
    assert "\n" not in str(exc.value)
    assert ("upgrade nas" in str(exc.value)) == (version > SCHEMA_VERSION)
    if path:
        assert path.read_bytes() == before
    engine = create_engine(store_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM nas_meta WHERE name='schema_version'")).scalar() == str(version)
        assert conn.execute(text("SELECT count(*) FROM latency")).scalar() == 1
    engine.dispose()


def test_corrupt_file_is_a_clear_error_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "latency.db"
    garbage = b"this is not a database\x00" + bytes(range(256)) * 20
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match="is not a SQLite database"):
        LatencyStore(str(path))
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latency.db"]


def _rows_seen_by_another_process(path: Path) -> int:
    """Open the file with SQLite in a new process, count the rows and close, as `nas db stats` would."""
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "print(c.execute('SELECT count(*) FROM latency').fetchone()[0]); c.close()")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_a_second_store_in_one_process_keeps_the_wal_of_the_first(tmp_path: Path) -> None:
    """Opening a store must not touch the file outside SQLite: closing any descriptor of it drops all of this
    process's POSIX locks on it, and a reader in another process then deletes the WAL under the first
    store's open connection, whose later rows are lost (seen in a bench: a search's store beside the next)."""
    path = tmp_path / "latency.db"
    first = LatencyStore(str(path))
    first.put(KEY, row(1.5))
    second = LatencyStore(str(path))  # what the next search (or the bench's count) of the same process does
    assert _rows_seen_by_another_process(path) == 1
    assert (tmp_path / "latency.db-wal").exists()
    first.put(dataclasses.replace(KEY, arch_id="b" * 64), row(2.5))
    assert _rows_seen_by_another_process(path) == 2
    second.close()
    first.close()
    assert _rows_seen_by_another_process(path) == 2


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE latency (x INTEGER)"))
    engine.dispose()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="no nas schema version"):
        LatencyStore(str(path))
    assert path.read_bytes() == before


def test_url_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from latency_db import resolve_url

    monkeypatch.setenv("NAS_LATENCY_DB", str(tmp_path / "env.db"))
    assert resolve_url(None) == f"sqlite:///{tmp_path / 'env.db'}"
    assert resolve_url(str(tmp_path / "arg.db")) == f"sqlite:///{tmp_path / 'arg.db'}"
    assert resolve_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    monkeypatch.delenv("NAS_LATENCY_DB")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    assert resolve_url(None) == f"sqlite:///{tmp_path / 'cache' / 'latency.db'}"


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    store = LatencyStore(str(tmp_path / "w.db"))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_import_round_trip(store_url: str, tmp_path: Path, suffix: str) -> None:
    src = LatencyStore(store_url)
    src.put(KEY, row(1.5))
    other = dataclasses.replace(KEY, arch_id="b" * 64)
    src.put(other, row(error="parse failed"))
    file = tmp_path / f"rows{suffix}"
    assert src.export(file) == 2
    dst = LatencyStore(str(tmp_path / "dst.db"))
    assert dst.import_file(file) == (2, 0)
    assert dst.import_file(file) == (0, 2)
    a, b = dst.get(KEY), dst.get(other)
    assert a["median_ms"] == 1.5 and a["unstable"] is False and json.loads(a["samples_json"]) == [1.0, 1.5, 2.0]
    assert b["error"] == "parse failed" and b["median_ms"] is None


def test_import_refuses_edited_keys(tmp_path: Path) -> None:
    import pandas as pd

    src = LatencyStore(str(tmp_path / "a.db"))
    src.put(KEY, row())
    src.export(tmp_path / "rows.csv")
    df = pd.read_csv(tmp_path / "rows.csv")
    df.loc[0, "key_json"] = df.loc[0, "key_json"].replace("cpu-fast-v1", "cpu-fast-v9")
    df.to_csv(tmp_path / "rows.csv", index=False)
    dst = LatencyStore(str(tmp_path / "b.db"))
    with pytest.raises(StoreError, match="key_hash does not match"):
        dst.import_file(tmp_path / "rows.csv")
    assert dst.count() == 0
    with pytest.raises(StoreError, match=r"use a \.csv or \.parquet"):
        dst.import_file(tmp_path / "rows.txt")


def test_a_database_from_before_the_spec_and_canary_tables_gets_them_and_keeps_its_rows(store_url: str) -> None:
    store = LatencyStore(store_url)
    store.put(KEY, row())
    with store.engine.connect() as conn:  # as the first schema-1 nas left it
        conn.execute(text("DROP TABLE arch_specs"))
        conn.execute(text("DROP TABLE canary_runs"))
        conn.commit()
    store.close()
    again = LatencyStore(store_url)
    assert again.count() == 1 and again.get(KEY)["median_ms"] == 1.5
    again.put_spec("a" * 64, "{}")
    assert again.specs() == {"a" * 64: "{}"} and again.canary_history("x", "canary-v1") == []


class LosesItsNextConnection:
    """The store's engine, except that its next connection fails as one does during a PostgreSQL restart."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.lost = engine, False

    def _lose_once(self) -> None:
        if not self.lost:
            self.lost = True
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    def connect(self) -> Any:
        self._lose_once()
        return self.engine.connect()

    def begin(self) -> Any:
        self._lose_once()
        return self.engine.begin()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


CANARY = {"scope_hash": "s" * 64, "scope_json": "{}", "canary": "canary-v1", "median_ms": 1.0, "cov": 0.01,
          "context": "search", "measured_at": "2026-12-05T00:00:00+00:00"}
CALLS = {  # every call a search worker makes on the store (a worker killed by one was seen during a restart)
    "put_spec": lambda s: s.put_spec("b" * 64, "{}"), "specs": lambda s: s.specs(), "get": lambda s: s.get(KEY),
    "get_row": lambda s: s.get_row(KEY.arch_id), "rows_where": lambda s: s.rows_where(status="ok"),
    "replace": lambda s: s.replace(KEY.digest, {"median_ms": 1.25}), "add_canary": lambda s: s.add_canary(CANARY),
    "canary_history": lambda s: s.canary_history("s" * 64, "canary-v1"), "count": lambda s: s.count(),
    "put": lambda s: s.put(replace_key(KEY), row()),
}


def replace_key(key: LatencyKey) -> LatencyKey:
    return dataclasses.replace(key, arch_id="c" * 64)


@pytest.mark.parametrize("call", CALLS)
def test_every_call_rides_out_a_lost_connection(call: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("latency_db.retry.FIRST_DELAY_S", 0.01)
    store = LatencyStore(f"sqlite:///{tmp_path / 'latency.db'}")
    store.put(KEY, row())
    engine = store.engine = LosesItsNextConnection(store.engine)
    CALLS[call](store)
    assert engine.lost  # the call met the lost connection, and went on
