"""Small SQL helpers shared by the store and its import/export: chunked IN lists and UTC times."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, UTC

SQL_IN_CHUNK = 900  # stay under SQLite's limit on bound variables per statement


def chunks(items: Sequence[int], size: int = SQL_IN_CHUNK) -> Iterator[list[int]]:
    """Consecutive slices of ``items``, each short enough for one IN list."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """Timestamps read back from SQLite lose their zone: they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def insert_ignoring_duplicates(conn, table, rows: list[dict], unique: Sequence[str]) -> int:  # noqa: ANN001 (SQLAlchemy types)
    """Insert rows, skipping any that would repeat an existing row's ``unique`` columns; returns how many were added.

    SQLite and PostgreSQL do it in the statement (ON CONFLICT DO NOTHING); other databases look first."""
    if not rows:
        return 0
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        statement = (sqlite.insert(table) if name == "sqlite" else postgresql.insert(table)).on_conflict_do_nothing(index_elements=list(unique))
        return int(conn.execute(statement, rows).rowcount or 0)
    from sqlalchemy import and_, insert as plain_insert, select

    added = 0
    for row in rows:
        exists = conn.execute(select(table.c[unique[0]]).where(and_(*(table.c[c] == row[c] for c in unique))).limit(1)).first()
        if exists is None:
            conn.execute(plain_insert(table).values(**row))
            added += 1
    return added
