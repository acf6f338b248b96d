"""The hot paths' SQL through one raw DB-API connection: the sequence stamp, the hit rows of a
search, and the lean rows of a full listing (the web page's list of every pamphlet).

SQLAlchemy's statement building and row mapping cost more than the query itself on a search
(about 0.6 ms against 0.04 ms for the rows of 10 hits). Here one connection is kept for the
store's lifetime, the two statements are fixed strings (SQLite caches their prepared form), and
rows become :class:`Pamphlet` objects without re-validation (they were validated when written).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from sqlalchemy import Engine

from memory.schema import Pamphlet, PamphletSummary, Provenance, TrackRecord
from memory.sqlutil import utc

M = TypeVar("M", bound=BaseModel)
COLUMNS = (
    "id", "text", "plan", "audience", "tags", "cue", "provenance", "embedding_model", "embedding_dim",
    "content_hash", "created_at", "updated_at", "deleted", "version",
)
SUMMARY_COLUMNS = ("id", "text", "audience", "tags", "cue", "version", "deleted", "created_at", "updated_at")


class HitReader:
    """Reads the store's sequence stamp and pamphlet rows by id over a dedicated connection."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._mark = "?" if self._sqlite else "%s"
        self._conn: Any = None
        self._lock = threading.Lock()

    def _cursor(self) -> Any:
        if self._conn is None:
            self._conn = self._engine.raw_connection()
            if self._sqlite:  # hits are random rows: read them through a memory map and a bigger page cache
                cursor = self._conn.cursor()
                cursor.execute("PRAGMA mmap_size=1073741824")
                cursor.execute("PRAGMA cache_size=-65536")
                cursor.close()
            else:
                self._conn.driver_connection.autocommit = True  # no transaction held open between searches
        return self._conn.cursor()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Execute on the kept connection; a connection the server dropped is replaced once."""
        with self._lock:
            for attempt in (1, 2):
                cursor = self._cursor()
                try:
                    cursor.execute(sql, list(params))
                    return cursor.fetchall()
                except self._engine.dialect.loaded_dbapi.OperationalError:
                    if attempt == 2 or self._sqlite:
                        raise
                    self._conn.invalidate()
                    self._conn = None
                finally:
                    cursor.close()
        raise AssertionError("unreachable")

    def seq(self) -> int:
        return int(self._run("SELECT seq FROM store_state WHERE id = 1")[0][0])

    def pamphlets(self, ids: Sequence[int]) -> dict[int, Pamphlet]:
        """Rows of ``ids`` (unknown ids are left out), keyed by id."""
        if not ids:
            return {}
        sql = f"SELECT {', '.join(COLUMNS)} FROM pamphlets WHERE id IN ({', '.join([self._mark] * len(ids))})"
        return {row[0]: self._pamphlet(row) for row in self._run(sql, ids)}

    def _pamphlet(self, row: tuple) -> Pamphlet:
        """One row as a Pamphlet: JSON columns parsed (text on SQLite, already decoded on PostgreSQL),
        timestamps made UTC, no re-validation. A search's whole overhead over FAISS is mostly this."""
        (pamphlet_id, text, plan, audience, tags, cue, provenance, embedding_model, embedding_dim,
         content_hash, created_at, updated_at, deleted, version) = row
        if isinstance(plan, (str, bytes)):
            plan = _loads(plan)
        if isinstance(tags, (str, bytes)):
            tags = _loads(tags)
        if isinstance(provenance, (str, bytes)):
            provenance = _loads(provenance)
        return trusted(Pamphlet, {
            "text": text, "plan": plan, "audience": audience, "tags": tags or [], "cue": cue,
            "provenance": trusted(Provenance, {**PROVENANCE_DEFAULTS, **provenance}),
            "id": pamphlet_id, "version": version, "embedding_model": embedding_model, "embedding_dim": embedding_dim,
            "content_hash": content_hash, "created_at": _utc_time(created_at), "updated_at": _utc_time(updated_at),
            "deleted": bool(deleted),
        })

    def summaries(self, include_deleted: bool = False, limit: int | None = None, offset: int = 0) -> list[PamphletSummary]:
        """Pamphlets by id as :class:`PamphletSummary` rows: one statement, no JSON beyond the
        tags, no model validation (10,000 rows in tens of milliseconds instead of most of a second)."""
        sql = f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM pamphlets"
        if not include_deleted:
            sql += " WHERE NOT deleted"
        sql += " ORDER BY id"
        params: list[int] = []
        if limit is not None or offset:
            sql += f" LIMIT {self._mark} OFFSET {self._mark}"
            params = [-1 if limit is None and self._sqlite else limit, offset]  # type: ignore[list-item]
        loads, parse, make = orjson.loads, datetime.fromisoformat, PamphletSummary._make
        out = []
        for pamphlet_id, text, audience, tags, cue, version, deleted, created, updated in self._run(sql, params):
            if isinstance(tags, (str, bytes)):
                tags = loads(tags)
            if isinstance(created, str):
                created, updated = parse(created), parse(updated)
            out.append(make((pamphlet_id, text, audience, tags or [], cue, version, bool(deleted), utc(created), utc(updated))))
        return out

    def all_track_records(self) -> dict[int, TrackRecord]:
        """The track record of every pamphlet that has one (one grouped scan of the usage table)."""
        rows = self._run("SELECT pamphlet_id, COUNT(*), AVG(reward), MAX(used_at) FROM pamphlet_uses GROUP BY pamphlet_id")
        parse = datetime.fromisoformat
        return {
            pamphlet_id: trusted(TrackRecord, {"uses": count, "mean_reward": float(mean), "last_used_at": utc(parse(last) if isinstance(last, str) else last)})
            for pamphlet_id, count, mean, last in rows
        }

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


PROVENANCE_DEFAULTS = Provenance().model_dump()
_loads = orjson.loads


def _utc_time(value: Any) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite gives ISO text, PostgreSQL a datetime)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def trusted(model: type[M], data: dict[str, Any]) -> M:
    """A model instance from data this store validated when it wrote it: what pydantic's
    model_construct does, without its per-field default handling (data holds every field)."""
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", data)
    object.__setattr__(instance, "__pydantic_fields_set__", set(data))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance

