"""MemoryStore: pamphlets in SQL (the source of truth) with a FAISS index as a rebuildable cache.

A plain CRUD + search API, as in mem0 or LangGraph's store. Every write is one transaction that
bumps ``store_state.seq``; before each search the store applies rows newer than the last ``seq``
it has indexed, so several processes can share a store without losing or mixing writes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select, update

from memory import tables as t
from memory.embed import Embedder, make_embedder
from memory.engine import default_index_path, is_url, make_engine
from memory.errors import ConcurrentEdit, EmbedderMismatch, MemoryStoreError, PamphletNotFound
from memory.index import INDEX_KINDS, IndexKind, VectorIndex
from memory.locking import file_lock
from memory.schema import Pamphlet, PamphletIn, PamphletVersion, SearchHit, TrackRecord

log = logging.getLogger(__name__)
Progress = Callable[[int], None]
UNSET: Any = object()
SNAPSHOT_FIELDS = ("text", "plan", "audience", "tags", "cue", "provenance")


SQL_IN_CHUNK = 900  # stay under SQLite's limit on bound variables per statement


def _chunks(items: Sequence[int], size: int = SQL_IN_CHUNK) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class _Entry:
    """What search filters need about a live pamphlet, mirrored in memory."""

    audience: str
    tags: frozenset[str]
    version: int


class MemoryStore:
    """Open with :meth:`open`; use as a context manager so the index is saved on exit."""

    def __init__(self) -> None:
        raise TypeError("use MemoryStore.open(path_or_url, ...)")

    # ------------------------------------------------------------------ opening and closing
    @classmethod
    def open(
        cls,
        target: str | Path,
        embedder: Embedder | str | None = None,
        index_kind: IndexKind | None = None,
        index_path: Path | None = None,
        index_dir: Path = Path(".atlas/indexes"),
        create: bool = True,
    ) -> MemoryStore:
        """Open (or create) the store at a SQLite path or SQLAlchemy URL.

        ``embedder`` defaults to the one the store was built with (MiniLM for a new store);
        another one is an error: use :meth:`reindex` to switch explicitly."""
        if index_kind is not None and index_kind not in INDEX_KINDS:
            raise MemoryStoreError(f"unknown index kind {index_kind!r}; expected one of {', '.join(INDEX_KINDS)}")
        if not create and not is_url(target) and not Path(target).expanduser().is_file():
            raise MemoryStoreError(f"no memory store at {target}: check --store, or create one with `atlas memory add`")
        self = object.__new__(cls)
        self.target = str(target)
        self.engine = make_engine(target)
        self.index_path = index_path or default_index_path(target, index_dir)
        self.lock_path = self.index_path.with_name(self.index_path.name + ".lock")
        self.notices: list[str] = []
        t.metadata.create_all(self.engine)
        self.embedder = self._resolve_embedder(embedder)
        self._entries: dict[int, _Entry] = {}
        self._index_seq = 0
        self._dirty = False
        self._load_index(index_kind)
        return self

    def _resolve_embedder(self, embedder: Embedder | str | None) -> Embedder:
        with self.engine.connect() as conn:
            state = conn.execute(select(t.store_state)).mappings().first()
        if isinstance(embedder, str):
            embedder = make_embedder(embedder)
        if state is None:
            embedder = embedder or make_embedder("minilm")
            with self._write() as conn:
                if conn.execute(select(t.store_state.c.id)).first() is None:
                    conn.execute(
                        insert(t.store_state).values(
                            id=1,
                            schema_version=t.SCHEMA_VERSION,
                            seq=0,
                            embedding_model=embedder.name,
                            embedding_spec=getattr(embedder, "spec", embedder.name),
                            embedding_dim=embedder.dim,
                            created_at=_now(),
                        )
                    )
            return embedder
        if embedder is None:
            return make_embedder(state["embedding_spec"])
        if (embedder.name, embedder.dim) != (state["embedding_model"], state["embedding_dim"]):
            raise EmbedderMismatch(
                f"store {self.target} was built with embedder {state['embedding_model']} "
                f"({state['embedding_dim']} dims) but was opened with {embedder.name} ({embedder.dim} dims). "
                f"Open it with its own embedder (--embedder {state['embedding_spec']}), or switch it "
                f"explicitly with `atlas memory reindex --embedder {getattr(embedder, 'spec', embedder.name)}`."
            )
        return embedder

    def close(self) -> None:
        if self._dirty:
            self.save_index()
        self.engine.dispose()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE); commits on success, rolls back on error."""
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def _bump(self, conn: Connection) -> int:
        conn.execute(update(t.store_state).where(t.store_state.c.id == 1).values(seq=t.store_state.c.seq + 1))
        return self._db_seq(conn)

    def _db_seq(self, conn: Connection) -> int:
        return int(conn.execute(select(t.store_state.c.seq)).scalar_one())

    # ------------------------------------------------------------------ the index cache
    def _load_index(self, index_kind: IndexKind | None) -> None:
        """Load the index file, check it against SQL (ids and versions), repair or rebuild."""
        with self.engine.connect() as conn:
            seq = self._db_seq(conn)
            self._entries = self._live_entries(conn)
        loaded = None
        if self.index_path.is_file():
            try:
                with file_lock(self.lock_path, shared=True):
                    loaded = VectorIndex.load(self.index_path)
            except (ValueError, RuntimeError, OSError, KeyError) as exc:  # a damaged cache is rebuilt, never trusted
                self.notices.append(f"index file {self.index_path} is unreadable ({exc}); rebuilt from SQL")
        if loaded is None:
            if self.index_path.is_file() or self._entries:
                if not self.notices:
                    self.notices.append(f"index file {self.index_path} is missing; rebuilt from SQL")
            self._rebuild(index_kind or "flat", seq, self._entries)
            return
        index, meta, arrays = loaded
        wanted = index_kind or meta.get("kind", "flat")
        problem = self._unusable(index, meta, arrays, wanted)
        if problem:
            self.notices.append(f"{problem}; rebuilt from SQL")
            self._rebuild(wanted, seq, self._entries)
            return
        self._index = index
        indexed = dict(zip(arrays["entry_ids"].tolist(), arrays["entry_versions"].tolist()))
        stale = [i for i, e in self._entries.items() if indexed.get(i) != e.version]
        gone = [i for i in indexed if i not in self._entries]
        if stale or gone:
            self.notices.append(
                f"index was behind SQL ({len(stale)} new or changed, {len(gone)} removed pamphlets); updated"
            )
            with self.engine.connect() as conn:
                self._index_vectors(conn, stale)
            index.remove(gone)
            self._dirty = True
        self._index_seq = seq
        self._maybe_compact()

    def _unusable(self, index: VectorIndex, meta: dict, arrays: dict[str, np.ndarray], wanted: str) -> str | None:
        """Why a loaded index file cannot be brought up to date incrementally (None: it can)."""
        if meta.get("embedding_model") != self.embedder.name or meta.get("dim") != self.embedder.dim:
            return f"index was built with {meta.get('embedding_model')}, the store uses {self.embedder.name}"
        if wanted != index.kind:
            return f"index kind changed from {index.kind} to {wanted}"
        if "entry_ids" not in arrays or "entry_versions" not in arrays:
            return "index file lacks its version list"
        if set(arrays["entry_ids"].tolist()) != set(index.ids()):
            return "index file slot map and version list disagree"
        return None

    def _live_entries(self, conn: Connection, ids: Sequence[int] | None = None) -> dict[int, _Entry]:
        """Filter metadata of live pamphlets (all, or ``ids``). This runs on every open, so it
        reads plain columns only: tags come from the tags table, not the JSON column."""
        if ids is not None:
            entries: dict[int, _Entry] = {}
            for part in _chunks(ids):
                entries.update(self._live_entries_where(conn, t.pamphlets.c.id.in_(part)))
            return entries
        return self._live_entries_where(conn, None)

    def _live_entries_where(self, conn: Connection, condition: Any) -> dict[int, _Entry]:
        p, tg = t.pamphlets.c, t.pamphlet_tags.c
        live = p.deleted.is_(False) if condition is None else and_(p.deleted.is_(False), condition)
        tags: dict[int, list[str]] = {}
        for pamphlet_id, tag in conn.execute(select(tg.pamphlet_id, tg.tag).join(t.pamphlets, p.id == tg.pamphlet_id).where(live)).all():
            tags.setdefault(pamphlet_id, []).append(tag)
        shared: dict[tuple[str, ...], frozenset[str]] = {}  # many pamphlets share one tag set
        entries = {}
        for pamphlet_id, audience, version in conn.execute(select(p.id, p.audience, p.version).where(live)).all():
            key = tuple(sorted(tags.get(pamphlet_id, ())))
            entries[pamphlet_id] = _Entry(audience, shared.setdefault(key, frozenset(key)), version)
        return entries

    def _index_vectors(self, conn: Connection, ids: Sequence[int]) -> None:
        """Read stored vectors of ``ids`` from SQL into the index."""
        for part in _chunks(ids):
            rows = conn.execute(
                select(t.pamphlets.c.id, t.pamphlets.c.embedding).where(t.pamphlets.c.id.in_(part))
            ).all()
            if rows:
                vectors = np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows])
                self._index.upsert([r.id for r in rows], vectors)

    def _rebuild(self, kind: IndexKind, seq: int, entries: dict[int, _Entry] | None = None) -> None:
        """A fresh index from SQL; ``entries`` saves re-reading metadata the caller just read."""
        self._index = VectorIndex(self.embedder.dim, kind)
        with self.engine.connect() as conn:
            self._entries = entries if entries is not None else self._live_entries(conn)
            self._index_vectors(conn, sorted(self._entries))
        self._index_seq = seq
        self._dirty = True
        log.info("rebuilt %s index of %d pamphlets", kind, len(self._entries))

    def rebuild_index(self, kind: IndexKind | None = None) -> int:
        """Rebuild the index from SQL (e.g. to change its kind); returns the number indexed."""
        with self.engine.connect() as conn:
            seq = self._db_seq(conn)
        self._rebuild(kind or self._index.kind, seq)
        self.save_index()
        return len(self._index)

    def _maybe_compact(self, threshold: float = 0.3) -> None:
        if self._index.slots > 1000 and self._index.dead_fraction > threshold:
            self.rebuild_index()

    def save_index(self) -> None:
        """Write the index file atomically, under the store's lock."""
        ids = sorted(self._entries)
        arrays = {
            "entry_ids": np.asarray(ids, dtype=np.int64),
            "entry_versions": np.asarray([self._entries[i].version for i in ids], dtype=np.int64),
        }
        meta = {"seq": self._index_seq, "embedding_model": self.embedder.name}
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_path):
            self._index.save(self.index_path, meta, arrays)
        self._dirty = False

    def sync(self) -> int:
        """Apply changes other processes committed since our last look; returns how many."""
        with self.engine.connect() as conn:
            seq = self._db_seq(conn)
            if seq == self._index_seq:
                return 0
            changed = conn.execute(
                select(t.pamphlets.c.id, t.pamphlets.c.deleted).where(t.pamphlets.c.seq > self._index_seq)
            ).all()
            purged = conn.execute(select(t.tombstones.c.pamphlet_id).where(t.tombstones.c.seq > self._index_seq)).scalars().all()
            gone = [r.id for r in changed if r.deleted] + list(purged)
            live = [r.id for r in changed if not r.deleted]
            fresh = self._live_entries(conn, live)
            stale = [i for i, e in fresh.items() if self._entries.get(i) != e or i not in self._index]
            vector_changed = [
                i for i in stale
                if i not in self._index or self._entries.get(i) is None or self._entries[i].version != fresh[i].version
            ]
            self._index_vectors(conn, vector_changed)
        self._index.remove(gone)
        for pamphlet_id in gone:
            self._entries.pop(pamphlet_id, None)
        self._entries.update(fresh)
        self._index_seq = seq
        self._dirty = True
        return len(gone) + len(stale)

    def _applied(self, seq: int, upserts: dict[int, tuple[_Entry, np.ndarray | None]], removed: Iterable[int]) -> None:
        """Mirror our own committed write in the index without re-reading it from SQL."""
        vectors = [(i, v) for i, (_, v) in upserts.items() if v is not None]
        if vectors:
            self._index.upsert([i for i, _ in vectors], np.stack([v for _, v in vectors]))
        removed = list(removed)
        self._index.remove(removed)
        for pamphlet_id in removed:
            self._entries.pop(pamphlet_id, None)
        for pamphlet_id, (entry, _) in upserts.items():
            self._entries[pamphlet_id] = entry
        if self._index_seq == seq - 1:  # nobody else wrote in between: we are current
            self._index_seq = seq
        self._dirty = True

    # ------------------------------------------------------------------ writes
    def _embed(self, texts: Sequence[str], progress: Progress | None = None, chunk: int = 256) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), chunk):
            parts.append(self.embedder.encode(list(texts[start : start + chunk])))
            if progress is not None:
                progress(len(parts[-1]))
        return np.concatenate(parts) if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)

    def add(self, item: PamphletIn | dict[str, Any], changed_by: str = "api") -> Pamphlet:
        return self.get(self.add_many([item], changed_by=changed_by)[0])

    def add_many(
        self,
        items: Sequence[PamphletIn | dict[str, Any]],
        changed_by: str = "api",
        vectors: np.ndarray | None = None,
        batch_size: int = 2000,
        progress: Progress | None = None,
    ) -> list[int]:
        """Validate all, embed all, then insert in transactions of ``batch_size``. ``vectors``
        (L2-normalised, one row per item) skips embedding, e.g. to time the store alone."""
        pamphlets = [PamphletIn.model_validate(i) if not isinstance(i, PamphletIn) else i for i in items]
        if vectors is None:
            vectors = self._embed([p.text for p in pamphlets])
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(pamphlets), self.embedder.dim):
            raise MemoryStoreError(
                f"expected {len(pamphlets)} vectors of {self.embedder.dim} dims, got shape {vectors.shape}"
            )
        ids: list[int] = []
        for start in range(0, len(pamphlets), batch_size):
            batch = pamphlets[start : start + batch_size]
            ids.extend(self._insert(batch, vectors[start : start + batch_size], changed_by))
            if progress is not None:
                progress(len(batch))
        return ids

    def _insert(
        self,
        batch: Sequence[PamphletIn],
        vectors: np.ndarray,
        changed_by: str,
        keep: Sequence[dict] | None = None,
        after: Callable[[Connection, list[int]], None] | None = None,
    ) -> list[int]:
        """Insert one batch in one transaction. ``keep`` carries ids, timestamps, versions and the
        deleted flag of imported records (their history comes from ``after``, in the same transaction)."""
        now = _now()
        with self._write() as conn:
            seq = self._bump(conn)
            rows = []
            for n, (item, vector) in enumerate(zip(batch, vectors)):
                extra = keep[n] if keep else {}
                row = {
                    **item.model_dump(mode="json"),
                    "embedding": vector.tobytes(),
                    "embedding_model": self.embedder.name,
                    "embedding_dim": self.embedder.dim,
                    "content_hash": item.compute_hash(),
                    "created_at": extra.get("created_at", now),
                    "updated_at": extra.get("updated_at", now),
                    "deleted": bool(extra.get("deleted", False)),
                    "version": extra.get("version", 1),
                    "seq": seq,
                }
                if "id" in extra:
                    row["id"] = extra["id"]
                rows.append(row)
            if keep and any("id" in k for k in keep):
                ids = []
                for row in rows:  # explicit ids: one by one, so each row's id comes back with it
                    ids.append(int(conn.execute(insert(t.pamphlets).values(**row).returning(t.pamphlets.c.id)).scalar_one()))
                if conn.dialect.name == "postgresql":  # explicit ids do not advance a SERIAL sequence
                    conn.exec_driver_sql(
                        "SELECT setval(pg_get_serial_sequence('pamphlets', 'id'), (SELECT MAX(id) FROM pamphlets))"
                    )
            else:
                result = conn.execute(insert(t.pamphlets).returning(t.pamphlets.c.id, sort_by_parameter_order=True), rows)
                ids = [int(r[0]) for r in result]
            tag_rows = [{"pamphlet_id": i, "tag": tag} for i, item in zip(ids, batch) for tag in item.tags]
            if tag_rows:
                conn.execute(insert(t.pamphlet_tags), tag_rows)
            if after is not None:
                after(conn, ids)
            if not keep:
                conn.execute(
                    insert(t.pamphlet_versions),
                    [
                        {"pamphlet_id": i, "version": 1, "change": "created", "changed_by": changed_by, "changed_at": now, "snapshot": item.model_dump(mode="json")}
                        for i, item in zip(ids, batch)
                    ],
                )
        upserts = {
            i: (_Entry(item.audience, frozenset(item.tags), rows[n]["version"]), vectors[n])
            for n, (i, item) in enumerate(zip(ids, batch))
            if not rows[n]["deleted"]
        }
        self._applied(seq, upserts, [])
        return ids

    def update(
        self,
        pamphlet_id: int,
        *,
        text: str | None = None,
        plan: dict[str, Any] | None = UNSET,
        audience: str | None = None,
        tags: list[str] | None = None,
        cue: str | None = None,
        provenance: dict[str, Any] | None = None,
        changed_by: str = "api",
        change: str = "edited",
    ) -> Pamphlet:
        """Change fields of a live pamphlet; re-embeds when the text changes; keeps history."""
        current = self.get(pamphlet_id)
        if current.deleted:
            raise MemoryStoreError(f"pamphlet {pamphlet_id} is deleted; restore it before editing")
        fields = current.model_dump(include=set(SNAPSHOT_FIELDS))
        for name, value in (("text", text), ("audience", audience), ("tags", tags), ("cue", cue), ("provenance", provenance)):
            if value is not None:
                fields[name] = value
        if plan is not UNSET:
            fields["plan"] = plan
        new = PamphletIn.model_validate(fields)
        if new.model_dump() == PamphletIn.model_validate(current.model_dump(include=set(SNAPSHOT_FIELDS))).model_dump():
            return current
        vector = self._embed([new.text])[0] if new.text != current.text else None
        return self._commit_change(current, new, vector, changed_by, change)

    def _commit_change(
        self, current: Pamphlet, new: PamphletIn, vector: np.ndarray | None, changed_by: str, change: str,
        deleted: bool = False,
    ) -> Pamphlet:
        now = _now()
        version = current.version + 1
        with self._write() as conn:
            seq = self._bump(conn)
            self._write_version(conn, current.id, version, new, deleted, seq, now, change, changed_by, vector)
            if vector is None and not deleted and current.id not in self._index:
                stored = conn.execute(select(t.pamphlets.c.embedding).where(t.pamphlets.c.id == current.id)).scalar_one()
                vector = np.frombuffer(stored, dtype=np.float32)
        if deleted:
            self._applied(seq, {}, [current.id])
        else:
            self._applied(seq, {current.id: (_Entry(new.audience, frozenset(new.tags), version), vector)}, [])
        return self.get(current.id)

    def delete(self, pamphlet_id: int, changed_by: str = "api", change: str = "deleted") -> Pamphlet:
        """Soft delete: gone from search and listings at once, kept in SQL until purged."""
        current = self.get(pamphlet_id)
        if current.deleted:
            return current
        fields = PamphletIn.model_validate(current.model_dump(include=set(SNAPSHOT_FIELDS)))
        return self._commit_change(current, fields, None, changed_by, change, deleted=True)

    def restore(self, pamphlet_id: int, changed_by: str = "api") -> Pamphlet:
        current = self.get(pamphlet_id)
        if not current.deleted:
            return current
        fields = PamphletIn.model_validate(current.model_dump(include=set(SNAPSHOT_FIELDS)))
        return self._commit_change(current, fields, None, changed_by, "restored")

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Remove soft-deleted pamphlets for good (all of them, or the given ones)."""
        with self._write() as conn:
            query = select(t.pamphlets.c.id, t.pamphlets.c.deleted)
            if ids is None:
                doomed = list(conn.execute(select(t.pamphlets.c.id).where(t.pamphlets.c.deleted.is_(True))).scalars())
            else:
                found = {}
                for part in _chunks(list(ids)):
                    found.update({r.id: r.deleted for r in conn.execute(query.where(t.pamphlets.c.id.in_(part)))})
                missing = [i for i in ids if i not in found]
                live = [i for i in ids if found.get(i) is False]
                if missing:
                    raise PamphletNotFound(f"no pamphlet with id {', '.join(map(str, missing))}")
                if live:
                    raise MemoryStoreError(f"pamphlet {', '.join(map(str, live))} is not deleted; delete it before purging")
                doomed = sorted(set(ids))
            if not doomed:
                return 0
            seq = self._bump(conn)
            for chunk in _chunks(doomed):
                for table, column in (
                    (t.pamphlet_tags, t.pamphlet_tags.c.pamphlet_id),
                    (t.pamphlet_versions, t.pamphlet_versions.c.pamphlet_id),
                    (t.pamphlet_uses, t.pamphlet_uses.c.pamphlet_id),
                    (t.pamphlets, t.pamphlets.c.id),
                ):
                    conn.execute(delete(table).where(column.in_(chunk)))
                conn.execute(delete(t.tombstones).where(t.tombstones.c.pamphlet_id.in_(chunk)))
                conn.execute(insert(t.tombstones), [{"pamphlet_id": i, "seq": seq} for i in chunk])
        self._applied(seq, {}, doomed)
        return len(doomed)

    def record_use(self, pamphlet_id: int, episode_id: str, reward: float) -> None:
        """Note that an episode used a pamphlet and what reward (in [0, 1]) it got."""
        if not (isinstance(reward, (int, float)) and math.isfinite(reward) and 0.0 <= reward <= 1.0):
            raise MemoryStoreError(f"reward must be a number in [0, 1], got {reward!r}")
        self.get(pamphlet_id)
        with self._write() as conn:
            conn.execute(
                insert(t.pamphlet_uses).values(pamphlet_id=pamphlet_id, episode_id=str(episode_id), reward=float(reward), used_at=_now())
            )

    # ------------------------------------------------------------------ reads
    def get(self, pamphlet_id: int) -> Pamphlet:
        """One pamphlet, deleted or not (``deleted`` says which)."""
        found = self.get_many([pamphlet_id])
        if not found:
            raise PamphletNotFound(f"no pamphlet with id {pamphlet_id} in {self.target}")
        return found[0]

    def get_many(self, ids: Sequence[int]) -> list[Pamphlet]:
        """Pamphlets in the order of ``ids``; unknown ids are left out."""
        if not ids:
            return []
        by_id = {}
        with self.engine.connect() as conn:
            for part in _chunks(ids):
                by_id.update({row["id"]: _to_pamphlet(row) for row in conn.execute(_SELECT_BY_IDS, {"ids": part}).mappings()})
        return [by_id[i] for i in ids if i in by_id]

    def list(
        self,
        audience: str | None = None,
        tags: Sequence[str] = (),
        include_deleted: bool = False,
        limit: int | None = 50,
        offset: int = 0,
    ) -> list[Pamphlet]:
        """Pamphlets by id, filtered by audience and tags (all given tags must be present)."""
        query = select(t.pamphlets.c.id).order_by(t.pamphlets.c.id)
        if not include_deleted:
            query = query.where(t.pamphlets.c.deleted.is_(False))
        if audience:
            query = query.where(t.pamphlets.c.audience == audience)
        for tag in tags:
            query = query.where(
                t.pamphlets.c.id.in_(select(t.pamphlet_tags.c.pamphlet_id).where(t.pamphlet_tags.c.tag == tag))
            )
        query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            ids = list(conn.execute(query).scalars())
        return self.get_many(ids)

    def search(
        self,
        query: str,
        k: int = 5,
        audience: str | None = None,
        tags: Sequence[str] = (),
        min_score: float | None = None,
    ) -> list[SearchHit]:
        """Pamphlets most similar to ``query`` (cosine), filtered; deleted ones never appear."""
        vector = self.embedder.encode([query])[0]
        return self.search_vector(vector, k, audience, tags, min_score)

    def neighbours(
        self,
        vector: np.ndarray,
        k: int = 5,
        audience: str | None = None,
        tags: Sequence[str] = (),
        min_score: float | None = None,
    ) -> list[tuple[int, float]]:
        """(id, cosine) of the nearest live pamphlets, filtered; no pamphlet rows are read."""
        self.sync()
        wanted_tags = frozenset(tags)
        allowed = None
        if audience or wanted_tags:
            entries = self._entries

            def allowed(pamphlet_id: int) -> bool:
                entry = entries.get(pamphlet_id)
                return (
                    entry is not None
                    and (audience is None or entry.audience == audience)
                    and wanted_tags <= entry.tags
                )

        return self._index.search(vector, k, allowed, min_score)

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 5,
        audience: str | None = None,
        tags: Sequence[str] = (),
        min_score: float | None = None,
    ) -> list[SearchHit]:
        hits = self.neighbours(vector, k, audience, tags, min_score)
        pamphlets = {p.id: p for p in self.get_many([i for i, _ in hits])}
        return [
            SearchHit(pamphlet=pamphlets[i], score=score)
            for i, score in hits
            if i in pamphlets and not pamphlets[i].deleted
        ]

    def live_ids(self) -> list[int]:
        """Ids of every live pamphlet, as of the last sync."""
        self.sync()
        return sorted(self._entries)

    def history(self, pamphlet_id: int) -> list[PamphletVersion]:
        self.get(pamphlet_id)
        return self.histories([pamphlet_id])[pamphlet_id]

    def histories(self, ids: Sequence[int]) -> dict[int, list[PamphletVersion]]:
        """Every version of each pamphlet, oldest first (one query per 900 ids)."""
        out: dict[int, list[PamphletVersion]] = {i: [] for i in ids}
        v = t.pamphlet_versions.c
        with self.engine.connect() as conn:
            for part in _chunks(ids):
                rows = conn.execute(select(t.pamphlet_versions).where(v.pamphlet_id.in_(part)).order_by(v.pamphlet_id, v.version, v.id)).mappings()
                for r in rows:
                    out[r["pamphlet_id"]].append(
                        PamphletVersion(
                            pamphlet_id=r["pamphlet_id"], version=r["version"], change=r["change"],
                            changed_by=r["changed_by"], changed_at=_utc(r["changed_at"]), snapshot=r["snapshot"],
                        )
                    )
        return out

    def uses(self, pamphlet_id: int) -> list[dict[str, Any]]:
        return self.uses_of([pamphlet_id])[pamphlet_id]

    def uses_of(self, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """Each pamphlet's uses (episode, reward, when), in the order they were recorded."""
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        u = t.pamphlet_uses.c
        with self.engine.connect() as conn:
            for part in _chunks(ids):
                for r in conn.execute(select(u.pamphlet_id, u.episode_id, u.reward, u.used_at).where(u.pamphlet_id.in_(part)).order_by(u.id)):
                    out[r.pamphlet_id].append({"episode_id": r.episode_id, "reward": r.reward, "used_at": _utc(r.used_at).isoformat()})
        return out

    def track_records(self, ids: Sequence[int]) -> dict[int, TrackRecord]:
        """Uses and mean reward of each pamphlet, from the usage table."""
        records = {i: TrackRecord() for i in ids}
        if not ids:
            return records
        uses = t.pamphlet_uses.c
        rows = []
        with self.engine.connect() as conn:
            for part in _chunks(ids):
                rows += conn.execute(
                    select(uses.pamphlet_id, func.count(), func.avg(uses.reward), func.max(uses.used_at))
                    .where(uses.pamphlet_id.in_(part))
                    .group_by(uses.pamphlet_id)
                ).all()
        for pamphlet_id, count, mean, last in rows:
            records[pamphlet_id] = TrackRecord(uses=count, mean_reward=float(mean), last_used_at=_utc(last))
        return records

    def track_record(self, pamphlet_id: int) -> TrackRecord:
        self.get(pamphlet_id)
        return self.track_records([pamphlet_id])[pamphlet_id]

    def stats(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(t.pamphlets)).scalar_one()
            deleted = conn.execute(select(func.count()).where(t.pamphlets.c.deleted.is_(True))).scalar_one()
            by_audience = dict(
                conn.execute(
                    select(t.pamphlets.c.audience, func.count()).where(t.pamphlets.c.deleted.is_(False)).group_by(t.pamphlets.c.audience)
                ).all()
            )
            top_tags = conn.execute(
                select(t.pamphlet_tags.c.tag, func.count().label("n"))
                .join(t.pamphlets, and_(t.pamphlets.c.id == t.pamphlet_tags.c.pamphlet_id, t.pamphlets.c.deleted.is_(False)))
                .group_by(t.pamphlet_tags.c.tag)
                .order_by(func.count().desc(), t.pamphlet_tags.c.tag)
                .limit(10)
            ).all()
            uses = conn.execute(select(func.count(), func.avg(t.pamphlet_uses.c.reward))).one()
            seq = self._db_seq(conn)
        return {
            "store": self.target if is_url(self.target) else str(Path(self.target).resolve()),
            "live": total - deleted,
            "deleted": deleted,
            "by_audience": by_audience,
            "top_tags": {tag: n for tag, n in top_tags},
            "uses": uses[0],
            "mean_reward": float(uses[1]) if uses[1] is not None else None,
            "embedder": self.embedder.name,
            "dim": self.embedder.dim,
            "index": {"kind": self._index.kind, "vectors": len(self._index), "slots": self._index.slots, "path": str(self.index_path)},
            "seq": seq,
        }

    def merge(self, survivor_id: int, member_ids: Sequence[int], changed_by: str = "api") -> Pamphlet:
        """Fold near-duplicates into one pamphlet, in one transaction: the survivor gains their
        tags, episodes and uses; they are soft-deleted with a history entry naming the survivor."""
        members = [i for i in dict.fromkeys(member_ids) if i != survivor_id]
        survivor = self.get(survivor_id)
        others = [self.get(i) for i in members]
        for pamphlet in [survivor, *others]:
            if pamphlet.deleted:
                raise MemoryStoreError(f"pamphlet {pamphlet.id} is deleted and cannot take part in a merge")
        if not others:
            return survivor
        tags = list(dict.fromkeys(survivor.tags + [tag for o in others for tag in o.tags]))
        provenance = survivor.provenance.model_copy(deep=True)
        for other in others:
            provenance.episode_ids = list(dict.fromkeys(provenance.episode_ids + other.provenance.episode_ids))
            provenance.merged_from = list(dict.fromkeys(provenance.merged_from + [other.id] + other.provenance.merged_from))
        merged = PamphletIn.model_validate({**survivor.model_dump(include=set(SNAPSHOT_FIELDS)), "tags": tags, "provenance": provenance.model_dump()})
        now = _now()
        with self._write() as conn:
            seq = self._bump(conn)
            self._write_version(conn, survivor.id, survivor.version + 1, merged, False, seq, now, "merged", changed_by)
            for other in others:
                fields = PamphletIn.model_validate(other.model_dump(include=set(SNAPSHOT_FIELDS)))
                self._write_version(conn, other.id, other.version + 1, fields, True, seq, now, f"merged into {survivor.id}", changed_by)
            conn.execute(update(t.pamphlet_uses).where(t.pamphlet_uses.c.pamphlet_id.in_(members)).values(pamphlet_id=survivor.id))
        self._applied(seq, {survivor.id: (_Entry(merged.audience, frozenset(merged.tags), survivor.version + 1), None)}, members)
        return self.get(survivor.id)

    def _write_version(
        self, conn: Connection, pamphlet_id: int, version: int, fields: PamphletIn, deleted: bool,
        seq: int, now: datetime, change: str, changed_by: str, vector: np.ndarray | None = None,
    ) -> None:
        """Update a pamphlet row to a new version, its tags, and its history, in ``conn``'s transaction."""
        values: dict[str, Any] = {
            **fields.model_dump(mode="json"),
            "content_hash": fields.compute_hash(),
            "updated_at": now,
            "version": version,
            "deleted": deleted,
            "seq": seq,
        }
        if vector is not None:
            values["embedding"] = vector.tobytes()
        result = conn.execute(
            update(t.pamphlets)
            .where(t.pamphlets.c.id == pamphlet_id, t.pamphlets.c.version == version - 1)
            .values(**values)
        )
        if result.rowcount != 1:  # another writer got there first: refuse rather than overwrite
            raise ConcurrentEdit(
                f"pamphlet {pamphlet_id} changed while this edit was being made (it is no longer "
                f"version {version - 1}); nothing was written: read it again and retry"
            )
        conn.execute(delete(t.pamphlet_tags).where(t.pamphlet_tags.c.pamphlet_id == pamphlet_id))
        if fields.tags:
            conn.execute(insert(t.pamphlet_tags), [{"pamphlet_id": pamphlet_id, "tag": tag} for tag in fields.tags])
        conn.execute(
            insert(t.pamphlet_versions).values(
                pamphlet_id=pamphlet_id, version=version, change=change, changed_by=changed_by,
                changed_at=now, snapshot={**fields.model_dump(mode="json"), "deleted": deleted},
            )
        )

    # ------------------------------------------------------------------ embedder switch
    def reindex(self, embedder: Embedder | str, progress: Progress | None = None, chunk: int = 512) -> int:
        """Switch the store to another embedder: re-embed every pamphlet in one transaction."""
        new = make_embedder(embedder) if isinstance(embedder, str) else embedder
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.pamphlets.c.id, t.pamphlets.c.text).order_by(t.pamphlets.c.id)).all()
        vectors = np.zeros((len(rows), new.dim), dtype=np.float32)
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            vectors[start : start + len(part)] = new.encode([r.text for r in part])
            if progress is not None:
                progress(len(part))
        with self._write() as conn:
            seq = self._bump(conn)
            for (pamphlet_id, _), vector in zip(rows, vectors):
                conn.execute(
                    update(t.pamphlets).where(t.pamphlets.c.id == pamphlet_id).values(
                        embedding=vector.tobytes(), embedding_model=new.name, embedding_dim=new.dim, seq=seq
                    )
                )
            conn.execute(
                update(t.store_state).where(t.store_state.c.id == 1).values(
                    embedding_model=new.name, embedding_spec=getattr(new, "spec", new.name), embedding_dim=new.dim
                )
            )
        self.embedder = new
        self._rebuild(self._index.kind, seq)
        self.save_index()
        return len(rows)

    # ------------------------------------------------------------------ transfer and merging
    def export_jsonl(self, path: str | Path, include_deleted: bool = False) -> int:
        from memory.transfer import export_jsonl

        return export_jsonl(self, Path(path), include_deleted)

    def import_jsonl(self, path: str | Path, skip_invalid: bool = False, changed_by: str = "import", progress: Progress | None = None):
        from memory.transfer import import_jsonl

        return import_jsonl(self, Path(path), skip_invalid=skip_invalid, changed_by=changed_by, progress=progress)

    def dedup(self, threshold: float = 0.92, dry_run: bool = False, changed_by: str = "dedup"):
        from memory.dedup import dedup

        return dedup(self, threshold=threshold, dry_run=dry_run, changed_by=changed_by)


# Built once: the hit fetch runs on every search.
_SELECT_BY_IDS = select(*[c for c in t.pamphlets.c if c.name not in ("embedding", "seq")]).where(
    t.pamphlets.c.id.in_(bindparam("ids", expanding=True))
)


def _to_pamphlet(row: Any) -> Pamphlet:
    data = dict(row)
    data["created_at"] = _utc(data["created_at"])
    data["updated_at"] = _utc(data["updated_at"])
    data["tags"] = data["tags"] or []
    return Pamphlet.model_validate(data)

