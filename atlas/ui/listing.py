"""The pamphlet list: what the query string asks for (validated), and the rows it gives."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from atlas.pamphlet_input import parse_tags
from memory.schema import Pamphlet, PamphletSummary, TrackRecord
from memory.store import MemoryStore

SortKey = Literal[
    "", "id", "-id", "updated", "-updated", "created", "-created", "version", "-version",
    "uses", "-uses", "reward", "-reward", "score", "-score",
]


class ListQuery(BaseModel):
    """The list page's query string. Unknown parameters are ignored; bad values are refused."""

    model_config = ConfigDict(extra="ignore")

    q: str = Field(default="", max_length=2000, description="semantic search text")
    audience: Literal["", "student", "teacher"] = ""
    tags: list[str] = Field(default_factory=list, description="all must match (comma-separated in the form)")
    status: Literal["live", "deleted", "all"] = "live"
    contains: str = Field(default="", max_length=500, description="substring of the text or cue")
    sort: SortKey = ""
    page: int = Field(default=1, ge=1)
    per_page: int | Literal["all"] | None = None
    k: int = Field(default=50, ge=1, le=1000, description="how many search hits")

    @field_validator("tags", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_tags(value)
        if isinstance(value, list):
            return [tag for part in value for tag in (parse_tags(part) if isinstance(part, str) else [part])]
        return value

    @field_validator("per_page", mode="before")
    @classmethod
    def _per_page(cls, value: Any) -> Any:
        if value in ("", None):
            return None
        if value == "all":
            return "all"
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError("must be a whole number or 'all'") from None
        if number < 1:
            raise ValueError("must be at least 1")
        return number

    @property
    def sort_key(self) -> str:
        return self.sort or ("-score" if self.q else "id")


Listed = Pamphlet | PamphletSummary  # search hits are whole pamphlets; the rest are lean rows
EMPTY_RECORD = TrackRecord()
WHOLE_TABLE = 900  # from this many rows on, one grouped scan of the usage table beats IN lists


@dataclass(frozen=True, slots=True)
class Row:
    pamphlet: Listed
    record: TrackRecord
    score: float | None = None


@dataclass(frozen=True)
class Listing:
    rows: list[Row]
    total: int
    page: int
    pages: int
    per_page: int | Literal["all"]
    searched: bool


class PamphletSnapshot:
    """Every pamphlet (deleted ones too) as lean summaries, read once and re-read only after a
    change, so the full list and its filters cost a scan of objects instead of a query.

    A change is noticed by :meth:`check`, called first on every list request: ``MemoryStore.sync``
    reports what other processes committed; this process's own writes call :meth:`invalidate`."""

    def __init__(self, memory: MemoryStore) -> None:
        self.memory = memory
        self._rows: list[PamphletSummary] | None = None

    def check(self) -> None:
        if self.memory.sync():
            self._rows = None

    def invalidate(self) -> None:
        self._rows = None

    def rows(self) -> list[PamphletSummary]:
        if self._rows is None:
            self._rows = self.memory.summaries(include_deleted=True)
        return self._rows


def _records(memory: MemoryStore, ids: list[int]) -> dict[int, TrackRecord]:
    """Track records of ``ids`` (an empty record for an unused pamphlet)."""
    if len(ids) >= WHOLE_TABLE:
        used = memory.all_track_records()
        return {i: used.get(i, EMPTY_RECORD) for i in ids}
    return memory.track_records(ids)


SORT_VALUES = {
    "id": lambda r: r.pamphlet.id,
    "updated": lambda r: r.pamphlet.updated_at,
    "created": lambda r: r.pamphlet.created_at,
    "version": lambda r: r.pamphlet.version,
    "uses": lambda r: r.record.uses,
    "reward": lambda r: r.record.mean_reward,
    "score": lambda r: r.score,
}


def _sorted(rows: list[Row], key: str) -> list[Row]:
    """Sort by one column; rows without a value (no reward yet, no score) go last either way."""
    value = SORT_VALUES[key.lstrip("-")]
    known = [r for r in rows if value(r) is not None]
    unknown = [r for r in rows if value(r) is None]
    known.sort(key=lambda r: r.pamphlet.id)
    known.sort(key=value, reverse=key.startswith("-"))  # stable: ties stay in id order
    return known + unknown


def _by_id_page(memory: MemoryStore, query: ListQuery, page_size: int) -> Listing | None:
    """The unfiltered list in id order, read a page at a time (the store counts live ids without
    reading rows); None when the query needs every row (filters, other sorts, 'all')."""
    plain = not (query.q or query.contains or query.audience or query.tags) and query.status == "live"
    per_page = query.per_page or page_size
    if not plain or per_page == "all" or query.sort_key not in ("id", "-id"):
        return None
    total = len(memory.live_ids())
    pages = max(1, math.ceil(total / per_page))
    page = min(query.page, pages)
    start = (page - 1) * per_page if query.sort_key == "id" else max(0, total - page * per_page)
    count = per_page if query.sort_key == "id" else total - (page - 1) * per_page - start
    chosen = memory.summaries(limit=count, offset=start)
    if query.sort_key == "-id":
        chosen.reverse()
    records = _records(memory, [p.id for p in chosen])
    rows = [Row(p, records[p.id]) for p in chosen]
    return Listing(rows=rows, total=total, page=page, pages=pages, per_page=per_page, searched=False)


def _matches(p: Listed, query: ListQuery, wanted_tags: set[str]) -> bool:
    return (
        (query.status == "all" or p.deleted == (query.status == "deleted"))
        and (not query.audience or p.audience == query.audience)
        and wanted_tags <= set(p.tags)
    )


def build_listing(memory: MemoryStore, query: ListQuery, page_size: int, snapshot: PamphletSnapshot | None = None) -> Listing:
    """The rows a list query asks for. ``snapshot`` (kept by the server between requests) spares
    re-reading every pamphlet for each filtered or sorted view."""
    snapshot = snapshot or PamphletSnapshot(memory)
    snapshot.check()
    fast = _by_id_page(memory, query, page_size)
    if fast is not None:
        return fast
    if query.q:
        hits = memory.search(query.q, k=query.k, audience=query.audience or None, tags=query.tags)
        found: list[tuple[Listed, float | None]] = [(h.pamphlet, h.score) for h in hits]
    else:
        wanted = set(query.tags)
        found = [(p, None) for p in snapshot.rows() if _matches(p, query, wanted)]
    if query.contains:
        needle = query.contains.casefold()
        found = [(p, s) for p, s in found if needle in p.text.casefold() or needle in p.cue.casefold()]
    key = query.sort_key
    field = key.lstrip("-")
    needs_records = field in ("uses", "reward")
    per_page = query.per_page or page_size
    size = len(found) if per_page == "all" else per_page
    pages = max(1, math.ceil(len(found) / size)) if size else 1
    page = min(query.page, pages)
    if needs_records:
        records = _records(memory, [p.id for p, _ in found])
        rows = _sorted([Row(p, records[p.id], s) for p, s in found], key)[(page - 1) * size : page * size]
    else:
        chosen = _sorted([Row(p, EMPTY_RECORD, s) for p, s in found], key)[(page - 1) * size : page * size]
        records = _records(memory, [r.pamphlet.id for r in chosen])
        rows = [Row(r.pamphlet, records[r.pamphlet.id], r.score) for r in chosen]
    return Listing(rows=rows, total=len(found), page=page, pages=pages, per_page=per_page, searched=bool(query.q))
