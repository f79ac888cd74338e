"""The latency store: SQLAlchemy Core over SQLite (default, WAL) or PostgreSQL (by URL).

Rows are inserted-or-ignored on the key digest, so several processes measuring the same candidate
at once leave one row and no error. The schema is versioned in a ``meta`` table; a database with
another version, or a file that is not a SQLite database, raises StoreError and is never modified.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    func,
    inspect,
    select,
)
from sqlalchemy.exc import DatabaseError, OperationalError

from latency_db.engine import StoreError, make_engine, resolve_url, schema_lock
from latency_db.fingerprint import canonical, cpu_flags_of, digest
from latency_db.keys import LatencyKey
from latency_db.retry import retry_transient
from latency_db.schema import (
    ROW_COLUMNS,
    SCHEMA_VERSION,
    arch_specs,
    canary_runs,
    device_peaks,
    latency,
    meta,
    metadata,
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class LatencyStore:
    """One latency database. Use ``get``/``put`` with a LatencyKey; rows are plain dicts."""

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        self.engine = make_engine(self.url)  # raises StoreError for a URL that cannot be a latency database
        self.shared_engine = self.engine  # transactional, one pool: for the tables kept beside (training cache)
        parsed = self.engine.url
        self.display_url = parsed.render_as_string(hide_password=True)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            # driver-level autocommit: every statement is its own transaction, except schema creation,
            # which takes BEGIN IMMEDIATE itself so that concurrent first opens serialize
            self.engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        try:
            self._init_schema_when_unlocked()
        except StoreError:
            self.engine.dispose()
            raise
        except (OperationalError, DatabaseError) as exc:
            self.engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0]
            if self.dialect == "sqlite" and "not a database" in reason:
                raise StoreError(f"{parsed.database} is not a SQLite database (left untouched): point "
                                 "--latency-db or NAS_LATENCY_DB at a new file") from None
            raise StoreError(f"cannot open latency database {self.display_url}: {reason}") from None

    # ------------------------------------------------------------------ opening
    def _check_version(self, conn: Any) -> bool:
        """True when the schema is present and current; raise when it is foreign or another version."""
        tables = set(inspect(conn).get_table_names())
        if meta.name not in tables:
            if tables & {latency.name, device_peaks.name}:
                raise StoreError(f"latency database {self.display_url} holds tables but no nas schema version "
                                 "(left untouched): use a new database")
            return False
        row = conn.execute(select(meta.c.value).where(meta.c.name == "schema_version")).first()
        found = int(row[0]) if row and str(row[0]).isdigit() else None
        if found != SCHEMA_VERSION:
            newer = found is not None and found > SCHEMA_VERSION
            raise StoreError(
                f"latency database {self.display_url} has schema version {found}, this nas reads version "
                f"{SCHEMA_VERSION} (left untouched): "
                + ("upgrade nas" if newer else "use a new database, or move rows with the nas that wrote it")
            )
        return True

    def _complete(self, conn: Any) -> bool:
        """Schema current and every table of this nas present (additive tables may be missing)."""
        return self._check_version(conn) and set(metadata.tables) <= set(inspect(conn).get_table_names())

    def _create_or_complete(self, conn: Any) -> None:
        if not self._check_version(conn):
            self._create(conn)
        else:
            metadata.create_all(conn, checkfirst=True)  # additive tables only: rows are never touched

    def _init_schema_when_unlocked(self) -> None:
        """``_init_schema``, tried again while another process holds a new SQLite file's lock (processes that
        open one database at the same moment race to create it; SQLite can refuse a WAL switch at once)."""
        for attempt in range(10):
            try:
                return self._init_schema()
            except OperationalError as exc:
                if self.dialect != "sqlite" or "locked" not in str(exc) or attempt == 9:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _init_schema(self) -> None:
        with self.engine.connect() as conn:
            if self._complete(conn):
                self._enable_wal(conn)
                return
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    self._create_or_complete(conn)
                    conn.exec_driver_sql("COMMIT")
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
                self._enable_wal(conn)
            else:
                with conn.begin():
                    schema_lock(conn)
                    self._create_or_complete(conn)

    def _create(self, conn: Any) -> None:
        metadata.create_all(conn)
        conn.execute(meta.insert().values(name="schema_version", value=str(SCHEMA_VERSION)))
        conn.execute(meta.insert().values(name="created", value=now_iso()))

    def _enable_wal(self, conn: Any) -> None:
        if self.dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ rows
    def _insert(self) -> Any:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert

    @retry_transient
    def get(self, key: LatencyKey) -> dict[str, Any] | None:
        """The stored row for this exact key, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(latency).where(latency.c.key_hash == key.digest)).mappings().first()
        return dict(row) if row else None

    @retry_transient
    def put(self, key: LatencyKey, values: dict[str, Any]) -> bool:
        """Insert the row unless the key is already stored; True when this call inserted it."""
        w = key.workload
        row = {**values, "key_hash": key.digest, "key_json": key.to_json(), "arch_id": key.arch_id,
               "backend": key.backend, "backend_version": key.backend_version, "protocol": key.protocol,
               "batch": w.batch, "channels": w.channels, "height": w.height, "width": w.width, "scale": w.scale,
               "io_dtype": w.io_dtype, "precision": key.precision}
        return self._insert_rows([row]) == 1

    def _insert_rows(self, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        # RETURNING counts what was inserted on both dialects (rowcount is unreliable with RETURNING).
        stmt = self._insert()(latency).on_conflict_do_nothing(index_elements=["key_hash"]).returning(latency.c.id)
        inserted = 0
        with self.engine.begin() as conn:
            for row in rows:
                inserted += len(conn.execute(stmt, row).all())
        return inserted

    @retry_transient
    def replace(self, key_hash: str, values: dict[str, Any]) -> None:
        """Overwrite a stored row's measured values (``nas db verify --fix``); its key never changes."""
        keyed = {"id", "key_hash", "key_json", "arch_id", "backend", "backend_version", "protocol", "batch",
                 "channels", "height", "width", "scale", "io_dtype", "precision"}
        with self.engine.begin() as conn:
            conn.execute(latency.update().where(latency.c.key_hash == key_hash)
                         .values({k: v for k, v in values.items() if k not in keyed}))

    @retry_transient
    def get_row(self, arch_id: str) -> dict[str, Any] | None:
        """The first stored row of ``arch_id`` (any key), or None."""
        with self.engine.connect() as conn:
            query = select(latency).where(latency.c.arch_id == arch_id).order_by(latency.c.id)
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    @retry_transient
    def add_canary(self, values: dict[str, Any]) -> None:
        """Append one canary reading (retried like every call here: a reading whose commit was lost with the
        connection may be stored twice; the canary's baseline, a median of its first readings, barely moves)."""
        with self.engine.begin() as conn:
            conn.execute(canary_runs.insert().values(**values))

    @retry_transient
    def canary_history(self, scope_hash: str, canary: str) -> list[dict[str, Any]]:
        """Every reading of ``canary`` in this scope, oldest first."""
        q = (select(canary_runs).where(canary_runs.c.scope_hash == scope_hash, canary_runs.c.canary == canary)
             .order_by(canary_runs.c.id))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    @retry_transient
    def put_spec(self, arch_id: str, spec_json: str) -> None:
        """Remember the architecture behind ``arch_id`` (insert-or-ignore)."""
        stmt = self._insert()(arch_specs).on_conflict_do_nothing(index_elements=["arch_id"])
        with self.engine.begin() as conn:
            conn.execute(stmt, {"arch_id": arch_id, "spec_json": spec_json})

    @retry_transient
    def specs(self, arch_ids: list[str] | None = None) -> dict[str, str]:
        """Stored spec JSON by arch_id (all of them, or those of ``arch_ids``)."""
        q = select(arch_specs.c.arch_id, arch_specs.c.spec_json)
        if arch_ids is not None:
            q = q.where(arch_specs.c.arch_id.in_(arch_ids))
        with self.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(q)}

    @retry_transient
    def rows_where(self, **equal: Any) -> list[dict[str, Any]]:
        """Rows whose columns equal the given values (e.g. backend=..., protocol=..., status='ok')."""
        q = select(latency).where(*[latency.c[k] == v for k, v in equal.items()]).order_by(latency.c.id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    @retry_transient
    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(latency)).scalar_one())

    @retry_transient
    def stats(self) -> list[dict[str, Any]]:
        """Rows per (device key, backend, protocol): measured, failed, unstable, and the CPU's ISA flags
        (``isa`` None: a CPU key from before the flags were keyed, which never answers a lookup)."""
        cols = (latency.c.key_json, latency.c.device, latency.c.backend, latency.c.protocol, latency.c.status,
                latency.c.unstable)
        groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(*cols).order_by(latency.c.id)).mappings():
                device_key = json.loads(r["key_json"])["device"]
                g = groups.setdefault((canonical(device_key), r["backend"], r["protocol"]), {
                    "device": r["device"], "backend": r["backend"], "protocol": r["protocol"], "rows": 0,
                    "errors": 0, "unstable": 0, "isa": cpu_flags_of(device_key),
                    "legacy_cpu_key": device_key.get("kind") == "cpu" and cpu_flags_of(device_key) is None,
                    "device_key": device_key})
                g["rows"] += 1
                g["errors"] += r["status"] == "error"
                g["unstable"] += bool(r["unstable"])
        return [groups[k] for k in sorted(groups, key=lambda k: (groups[k]["device"], k))]

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        with self.engine.connect() as conn:
            for row in conn.execute(select(*[latency.c[n] for n in ROW_COLUMNS]).order_by(latency.c.id)).mappings():
                yield dict(row)

    # ------------------------------------------------------------------ device peaks (CPU roofline)
    @retry_transient
    def get_peak(self, device_hash: str) -> tuple[float, float] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(device_peaks.c.peak_gflops, device_peaks.c.bandwidth_gbs)
                               .where(device_peaks.c.device_hash == device_hash)).first()
        return (float(row[0]), float(row[1])) if row else None

    @retry_transient
    def put_peak(self, device_hash: str, device: str, peak_gflops: float, bandwidth_gbs: float) -> None:
        stmt = self._insert()(device_peaks).on_conflict_do_nothing(index_elements=["device_hash"])
        with self.engine.begin() as conn:
            conn.execute(stmt, {"device_hash": device_hash, "device": device, "peak_gflops": peak_gflops,
                                "bandwidth_gbs": bandwidth_gbs, "measured_at": now_iso()})

    @retry_transient
    def raise_peak(self, device_hash: str, peak_gflops: float, bandwidth_gbs: float) -> None:
        """Raise a stored peak to at least these rates (never lowers: a peak is the best seen)."""
        with self.engine.begin() as conn:
            for column, value in ((device_peaks.c.peak_gflops, peak_gflops),
                                  (device_peaks.c.bandwidth_gbs, bandwidth_gbs)):
                conn.execute(device_peaks.update().where(device_peaks.c.device_hash == device_hash, column < value)
                             .values({column.name: value, "measured_at": now_iso()}))

    # ------------------------------------------------------------------ export / import
    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every row (with its architecture's spec JSON where stored) to a .csv or .parquet file
        (by suffix); returns the row count."""
        import pandas as pd

        fmt = _file_format(path)
        df = pd.DataFrame(list(self.iter_rows()), columns=list(ROW_COLUMNS))
        df.insert(0, "schema_version", SCHEMA_VERSION)
        specs = self.specs()
        df["spec_json"] = [specs.get(a) for a in df["arch_id"]]  # optional column: older exports lack it
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        return len(df)

    def import_file(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Insert-or-ignore the rows of a file written by ``export``; returns (inserted, already present).
        A row whose key_hash does not match its key_json is refused (the whole file is)."""
        import pandas as pd

        fmt = _file_format(path)
        try:
            df = pd.read_csv(path, keep_default_na=True) if fmt == "csv" else pd.read_parquet(path)
        except FileNotFoundError:
            raise StoreError(f"no such file: {path}") from None
        except Exception as exc:  # noqa: BLE001  pandas/pyarrow parse errors come in many types
            raise StoreError(f"cannot read {path} as {fmt}: {exc}") from None
        missing = [c for c in ("schema_version", *ROW_COLUMNS) if c not in df.columns]
        if missing:
            raise StoreError(f"{path} is not a latency export: missing columns {', '.join(missing)}")
        versions = set(df["schema_version"].astype(int)) if len(df) else {SCHEMA_VERSION}
        if versions != {SCHEMA_VERSION}:
            raise StoreError(f"{path} holds schema version(s) {sorted(versions)}, this nas reads {SCHEMA_VERSION}")
        rows = []
        for i, rec in enumerate(df[list(ROW_COLUMNS)].to_dict("records")):
            row = {k: _clean(v) for k, v in rec.items()}
            row["unstable"] = _as_bool(row["unstable"])
            for k in ("batch", "channels", "height", "width", "scale", "n_samples", "attempts"):
                row[k] = int(row[k])
            if digest(json.loads(row["key_json"])) != row["key_hash"]:
                raise StoreError(f"{path} row {i + 1}: key_hash does not match key_json (edited?); nothing imported")
            rows.append(row)
        inserted = self._insert_rows(rows)
        if "spec_json" in df.columns:
            for arch_id, spec_json in zip(df["arch_id"], df["spec_json"]):
                if isinstance(spec_json, str) and spec_json:
                    self.put_spec(str(arch_id), spec_json)
        return inserted, len(rows) - inserted


def _file_format(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise StoreError(f"{path}: use a .csv or .parquet file name")


def _clean(value: Any) -> Any:
    """pandas NaN/NA -> None; numpy scalars -> Python."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        return value.item()
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def open_store(url: str | None = None) -> LatencyStore:
    """Open (creating when new) the latency database at ``url`` / $NAS_LATENCY_DB / the default file."""
    return LatencyStore(url)
