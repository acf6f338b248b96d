"""SQLAlchemy engines for a store: a SQLite file (WAL, immediate write locks) or any database URL."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import Engine, create_engine, event


def is_url(target: str | Path) -> bool:
    return "://" in str(target)


def make_engine(target: str | Path) -> Engine:
    """A SQLite path gets WAL mode, foreign keys and a busy timeout; a URL is used as given."""
    if is_url(target):
        return create_engine(str(target), pool_pre_ping=True)
    path = Path(target).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Writers take the write lock up front: a deferred transaction that read first could
        # fail to upgrade when another process committed meanwhile.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def default_index_path(target: str | Path, index_dir: Path) -> Path:
    """Beside a SQLite file; under ``index_dir`` (keyed by URL digest) for a server database."""
    if is_url(target):
        digest = hashlib.sha256(str(target).encode()).hexdigest()[:16]
        return index_dir / f"{digest}.index"
    path = Path(target).expanduser().resolve()
    return path.with_name(path.name + ".index")
