"""Read-only access to a log database: a SQLite file, or any SQLAlchemy URL (MariaDB/MySQL, PostgreSQL).

An investigating agent writes arbitrary SQL, so every statement passes three guards:
a lexical check (one read statement, no write keywords: `sql_guard`), the engine's own read-only
mode (SQLite `mode=ro` + `query_only` + an authorizer: `sqlite_database`; a read-only session on
a server: `server_database`), and a time limit enforced by the engine (SQLite: a progress handler,
and a worker process killed at the limit plus a margin; servers: their statement timeout).
Statements longer than 100,000 characters are refused on every engine.
This module opens the right engine for a target and keeps the public names importable from one place.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.investigation.database_protocol import (
    QueryFailed,
    QueryRefused,
    QueryResult,
    QueryTimeout,
    ReadOnlyDatabase,
    to_python,
)
from benchmarks.investigation.server_database import SQLAlchemyDatabase
from benchmarks.investigation.sql_guard import check_sql
from benchmarks.investigation.sqlite_database import SQLiteDatabase, sqlite_url_path

__all__ = [
    "QueryFailed", "QueryRefused", "QueryResult", "QueryTimeout", "ReadOnlyDatabase", "SQLAlchemyDatabase",
    "SQLiteDatabase", "check_sql", "open_database", "to_python",
]  # fmt: skip


def open_database(target: str | Path) -> ReadOnlyDatabase:
    """A server URL opens through SQLAlchemy; a sqlite:/// URL or a file is SQLite; a folder means its world.db."""
    text = str(target)
    if "://" not in text:
        return SQLiteDatabase(target)
    if text.split("://", 1)[0].split("+", 1)[0].strip().lower() == "sqlite":
        return SQLiteDatabase(sqlite_url_path(text))
    return SQLAlchemyDatabase(text)
