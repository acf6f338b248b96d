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
