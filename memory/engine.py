"""SQLAlchemy engines for a store: a SQLite file (WAL, immediate write locks) or any database URL;
creating the schema safely when several processes open a new store at once."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError

from memory import tables as t
from memory.errors import MemoryStoreError, ReadOnlyStore

CONNECT_TIMEOUT_S = 10


def is_url(target: str | Path) -> bool:
    return "://" in str(target)


def sqlite_path(target: str | Path) -> Path:
    return Path(target).expanduser().resolve()


def is_read_only_file(path: Path) -> bool:
    """A SQLite store we cannot write: the file, or its folder (WAL needs its -wal and -shm files)."""
    return path.exists() and (not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK))


def _json_dumps(value: Any) -> str:
    """JSON columns through orjson (the stdlib encoder was a tenth of a bulk import); the rare value
    orjson refuses (an integer past 64 bits) goes through the stdlib encoder."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


JSON_CODEC: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def make_engine(target: str | Path, read_only: bool = False) -> Engine:
    """A SQLite path gets foreign keys and a busy timeout (WAL is set when the store is created);
    ``read_only`` opens it so that nothing, not even a -shm file, is written. A URL is used as given."""
    if is_url(target):
        url = make_url(str(target))
        # a server that does not answer is an error within seconds, never a hang (psycopg2 and psycopg 3 take it)
        waits = {"connect_timeout": CONNECT_TIMEOUT_S} if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query else {}
        return create_engine(url, pool_pre_ping=True, connect_args=waits, **JSON_CODEC)
    path = sqlite_path(target)
    if read_only:
        # immutable=1: no locks and no -shm (a read-only folder cannot hold one); any WAL content
        # would then be invisible, so a leftover WAL file is read through a plain read-only open.
        wal = path.with_name(path.name + "-wal")
        flags = "mode=ro" if wal.exists() and wal.stat().st_size else "mode=ro&immutable=1"
        uri = f"file:{quote(str(path))}?{flags}"
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False), **JSON_CODEC)
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MemoryStoreError(f"cannot create the folder for store {path}: {exc.strerror or exc}; choose a writable --store or ATLAS_HOME") from None
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 60}, **JSON_CODEC)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not read_only:
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        # Writers take the write lock up front: a deferred transaction that read first could
        # fail to upgrade when another process committed meanwhile.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def has_schema(engine: Engine, where: str) -> bool:
    """Whether the database holds a memory store; a file that is not a database is a clear error."""
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table("store_state")
    except DBAPIError as exc:
        raise not_a_store(where, exc) from None


def not_a_store(where: str, exc: BaseException) -> MemoryStoreError:
    """The clear error for a database that cannot be opened as a store (random bytes, damage)."""
    reason = str(getattr(exc, "orig", exc)).strip()
    if "not a database" in reason or "malformed" in reason:
        return MemoryStoreError(
            f"{where} is not a memory store ({reason}); check --store, or move the file away to create a new store there"
        )
    return MemoryStoreError(f"cannot open memory store {where}: {reason}")


def creation_lock(conn: Connection) -> None:
    """Serialise store creation on a server database (SQLite's BEGIN IMMEDIATE already does)."""
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"atlas-memory-schema:{conn.engine.url.render_as_string(hide_password=True)}".encode())
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def create_schema(engine: Engine, where: str) -> None:
    """Create the tables once, even when several processes open the same new store together:
    SQLite serialises on BEGIN IMMEDIATE, PostgreSQL on a transaction-scoped advisory lock, and
    each checks for the tables only once it holds the lock."""
    try:
        if engine.dialect.name == "sqlite":
            raw = engine.raw_connection()  # outside SQLAlchemy's BEGIN: WAL cannot be set inside a transaction
            try:
                raw.cursor().execute("PRAGMA journal_mode=WAL")  # kept in the file from now on
            finally:
                raw.close()
        with engine.connect() as conn:
            conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                creation_lock(conn)
                t.metadata.create_all(conn)
    except OperationalError as exc:
        if "readonly" in str(exc.orig).replace("-", "").lower():
            raise ReadOnlyStore(f"store {where} is read-only: cannot create it there; choose a writable --store") from None
        raise not_a_store(where, exc) from None
    except DBAPIError as exc:
        raise not_a_store(where, exc) from None


def default_index_path(target: str | Path, index_dir: Path) -> Path:
    """Beside a SQLite file; under ``index_dir`` (keyed by URL digest) for a server database."""
    if is_url(target):
        digest = hashlib.sha256(str(target).encode()).hexdigest()[:16]
        return index_dir / f"{digest}.index"
    path = sqlite_path(target)
    return path.with_name(path.name + ".index")
