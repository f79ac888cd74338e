"""One engine factory for a latency database: the latency rows and the training cache share its file.

``resolve_url`` turns --latency-db / $NAS_LATENCY_DB / the default into a SQLAlchemy URL, and
``make_engine`` opens it the one way both stores need: a SQLite file (never opened outside SQLite,
with a busy timeout so concurrent writers wait rather than fail) or PostgreSQL (pinged before use,
so a restarted server is ridden out). ``schema_lock`` serializes every table creation on PostgreSQL
under one advisory lock, whichever store creates its tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from latency_db.paths import cache_dir
from search_spaces.errors import UsageError

DB_ENV = "NAS_LATENCY_DB"
SCHEMA_LOCK_ID = 0x6E61732D6C6174  # PostgreSQL advisory lock serializing schema creation ("nas-lat")
BUSY_TIMEOUT_MS = 60_000


class StoreError(UsageError):
    """The latency database cannot be used; the message says why and what to do, in one line."""


def resolve_url(url: str | None = None) -> str:
    """--latency-db URL > $NAS_LATENCY_DB > SQLite file in the user cache dir. A plain path means a
    SQLite file; postgresql:// and postgres:// use the psycopg 3 driver."""
    value = url or os.environ.get(DB_ENV) or str(cache_dir() / "latency.db")
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    for prefix in ("postgresql://", "postgres://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix):]
    return value


def make_engine(url: str | None) -> Engine:
    """An engine on the latency database at ``url`` (see ``resolve_url``); StoreError when it cannot be one."""
    resolved = resolve_url(url)
    try:
        parsed = make_url(resolved)
    except ArgumentError:
        raise StoreError(f"latency database URL {resolved!r} is not a database URL") from None
    dialect = parsed.get_backend_name()
    if dialect == "postgresql":
        return create_engine(resolved, pool_pre_ping=True)
    if dialect != "sqlite":
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(f"latency database {shown}: only sqlite and postgresql are supported")
    database = parsed.database or ""
    if not database or database == ":memory:":
        raise StoreError("the latency database must be a file (an in-memory SQLite database is not shared)")
    # The file is never opened outside SQLite (a foreign file is refused by SQLite's own "not a database"):
    # closing any descriptor of it drops every POSIX lock this process holds on it, and a reader in
    # another process would then take the file as unused and delete the WAL this process's open
    # connections still write to (https://sqlite.org/howtocorrupt.html, 2.2).
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    return engine


def schema_lock(conn: Any) -> None:
    """Hold the schema lock for the rest of ``conn``'s transaction (PostgreSQL's CREATE TABLE is not safe
    to race: two workers collide on ``pg_type``'s unique index). SQLite serializes writers itself."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_ID})


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create ``metadata``'s tables once, however many workers start at the same moment: under the schema lock on
    PostgreSQL; SQLite serializes writers itself, and a worker that loses the race sees "already exists"."""
    try:
        with engine.begin() as conn:
            schema_lock(conn)
            metadata.create_all(conn, checkfirst=True)
    except OperationalError as exc:
        if "already exists" not in str(exc):
            raise


def insert_or_ignore(engine: Engine, table: Table, values: dict[str, Any]) -> bool:
    """Insert the row unless its primary key is there (the tables beside the latency rows keep the first writer's
    row: the same key computes the same result); True when this call inserted it."""
    dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(engine.dialect.name)
    try:
        with engine.begin() as conn:
            if dialect is None:
                return conn.execute(table.insert().values(values)).rowcount == 1
            return conn.execute(dialect.insert(table).values(values).on_conflict_do_nothing()).rowcount == 1
    except IntegrityError:  # other dialects: the key is already there
        return False
