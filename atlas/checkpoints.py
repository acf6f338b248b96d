"""Where episode checkpoints go: `OUT/checkpoints.sqlite`, or the PostgreSQL database of a shared memory.

With the memory on PostgreSQL, checkpoints go to the same database through LangGraph's Postgres
checkpointer, so an episode cut off on one host resumes on another; thread ids then carry the run's
id (kept in `OUT/run.json`), so that runs sharing a database never mix their checkpoints. Otherwise
they go to a SQLite file in the run folder, which several processes of one host may share (WAL and a
busy timeout: the Ray actors of a local run do).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from atlas.errors import AtlasError

CHECKPOINTS_FILE = "checkpoints.sqlite"
BUSY_TIMEOUT_S = 60.0


def postgres_conninfo(target: str | None) -> str | None:
    """The libpq URL of a PostgreSQL memory store's SQLAlchemy URL (None for SQLite or no memory)."""
    if target is None or "://" not in str(target):
        return None
    from sqlalchemy.engine import make_url

    url = make_url(str(target))
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def open_checkpointer(out: Path, memory_target: str | None) -> Iterator[Any]:
    """A LangGraph checkpointer for the run in `out`, beside the memory when that is on PostgreSQL."""
    conninfo = postgres_conninfo(memory_target)
    if conninfo is not None:
        try:
            from langgraph.checkpoint.postgres import PostgresSaver
        except ImportError:
            raise AtlasError("checkpoints beside a PostgreSQL memory need `langgraph-checkpoint-postgres` and `psycopg`: pip install 'atlas-cl[postgres]'") from None
        import psycopg

        try:
            with PostgresSaver.from_conn_string(conninfo + ("&" if "?" in conninfo else "?") + "connect_timeout=10") as saver:
                saver.setup()  # creates its tables once (idempotent)
                yield saver
        except psycopg.OperationalError as error:
            raise AtlasError(f"cannot reach the PostgreSQL database for checkpoints ({str(error).strip()[:300]}); check --memory") from None
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = sqlite3.connect(out / CHECKPOINTS_FILE, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    try:
        yield SqliteSaver(connection)
    finally:
        connection.close()
