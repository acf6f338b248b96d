"""MemoryStore: pamphlets in SQL (the source of truth) with a FAISS index as a rebuildable cache.

A plain CRUD + search API, as in mem0 or LangGraph's store. Every write is one transaction that
bumps ``store_state.seq``; before each search the store compares that stamp with the one its
:class:`IndexMirror` has applied and reads only the rows written since, so several processes can
share a store without losing or mixing writes.
"""

from __future__ import annotations

import builtins
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError

from memory import tables as t
from memory.dedup import MergeGroup, check_threshold, group_duplicates
from memory.embed import Embedder, make_embedder
from memory.engine import (
    create_schema,
    creation_lock,
    default_index_path,
    has_schema,
    is_read_only_file,
    is_url,
    make_engine,
    not_a_store,
    sqlite_path,
)
from memory.errors import ConcurrentEdit, EmbedderMismatch, ImportValidationError, MemoryStoreError, PamphletNotFound, ReadOnlyStore
from memory.hits import HitReader, trusted
from memory.index import VectorIndex, remove_leftovers
from memory.locking import file_lock
from memory import mirror as mirror_policy
from memory.mirror import INDEX_POLICIES, Entry, IndexMirror
from memory.migrate import migrate
from memory.schema import Pamphlet, PamphletIn, PamphletSummary, PamphletVersion, SearchHit, TrackRecord
from memory.sqlutil import chunks, insert_ignoring_duplicates, now, utc
from memory.transfer import (
    BATCH,
    ImportReport,
    export_line,
    fields_of,
    fresh_records,
    history_rows,
    kept_fields,
    read_jsonl,
    write_export,
)


log = logging.getLogger(__name__)
Progress = Callable[[int], None]
UNSET: Any = object()
SNAPSHOT_FIELDS = ("text", "plan", "audience", "tags", "cue", "provenance")


class MemoryStore:
    """Open with :meth:`open`; use as a context manager so the index is saved on exit."""

    # Set by :meth:`open` (the only constructor).
    target: str
    read_only: bool
    engine: Engine
    index_path: Path
    lock_path: Path
    notices: builtins.list[str]
    embedder: Embedder
    _lock: threading.RLock
    _dirty: bool
    _identity: str
    _hits: HitReader
    _mirror: IndexMirror

    def __init__(self) -> None:
        raise TypeError("use MemoryStore.open(path_or_url, ...)")

    # ------------------------------------------------------------------ opening and closing
    @classmethod
    def open(
        cls,
        target: str | Path,
        embedder: Embedder | str | None = None,
        index_kind: str | None = None,
        index_path: Path | None = None,
        index_dir: Path = Path(".atlas/indexes"),
        create: bool = True,
    ) -> MemoryStore:
        """Open (or, with ``create``, create) the store at a SQLite path or SQLAlchemy URL.

        ``embedder`` defaults to the one the store was built with (MiniLM for a new store);
        another one is an error: use :meth:`reindex` to switch explicitly. ``index_kind`` is
        ``auto`` (exact while small, HNSW from 20,000 pamphlets: the default for a new store),
        ``flat``, ``hnsw`` or ``ivf``; None keeps the store's choice. ``create=False`` never writes
        a schema: opening a missing or empty database is then an error. A SQLite store whose file
        or folder is read-only opens for reading; its writes raise :class:`ReadOnlyStore`."""
        if index_kind is not None and index_kind not in INDEX_POLICIES:
            raise MemoryStoreError(f"unknown index kind {index_kind!r}; expected one of {', '.join(INDEX_POLICIES)}")
        self = object.__new__(cls)
        self.target = str(target)
        self.read_only = False
        if not is_url(target):
            path = sqlite_path(target)
            if path.is_dir():
                raise MemoryStoreError(f"{path} is a folder, not a memory store file; check --store")
            if not create and not path.is_file():
                raise MemoryStoreError(f"no memory store at {target}: check --store, or create one with `atlas memory add`")
            self.read_only = is_read_only_file(path)
        self.engine = make_engine(target, read_only=self.read_only)
        self.index_path = Path(index_path) if index_path else default_index_path(target, Path(index_dir))
        self.lock_path = self.index_path.with_name(self.index_path.name + ".lock")
        self.notices = []
        self._lock = threading.RLock()
        self._dirty = False
        try:
            self._open_schema(create)
            if not self.read_only:
                self.notices += migrate(self.engine, creation_lock)
            self.embedder = self._resolve_embedder(embedder, create)
            self._identity = self._read_identity()
            self._hits = HitReader(self.engine)
            self._load_mirror(index_kind)
        except BaseException:
            self.engine.dispose()
            raise
        return self

    def _open_schema(self, create: bool) -> None:
        if has_schema(self.engine, self.target):
            return
        if not create:
            raise MemoryStoreError(
                f"{self.target} holds no memory store yet (an empty database); nothing was created. "
                "Create one with `atlas memory add` or `atlas memory import`"
            )
        if self.read_only:
            raise ReadOnlyStore(f"store {self.target} is read-only: cannot create a memory store there; choose a writable --store")
        create_schema(self.engine, self.target)

    def _state(self, conn: Connection) -> Any:
        try:
            return conn.execute(select(t.store_state)).mappings().first()
        except DBAPIError as exc:
            raise not_a_store(self.target, exc) from None

    def _resolve_embedder(self, embedder: Embedder | str | None, create: bool) -> Embedder:
        with self.engine.connect() as conn:
            state = self._state(conn)
        if isinstance(embedder, str):
            embedder = make_embedder(embedder)
        if state is None:
            if not create or self.read_only:
                raise MemoryStoreError(f"{self.target} holds no memory store yet (its creation never finished); nothing was created")
            embedder = embedder or make_embedder("minilm")
            with self._write() as conn:
                creation_lock(conn)
                state = self._state(conn)
                if state is None:
                    conn.execute(
                        insert(t.store_state).values(
                            id=1, schema_version=t.SCHEMA_VERSION, seq=0, embedding_model=embedder.name,
                            embedding_spec=getattr(embedder, "spec", embedder.name), embedding_dim=embedder.dim, created_at=now(),
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

    def _read_identity(self) -> str:
        """Which store this is (its creation time): an index file of another store is never taken for ours."""
        with self.engine.connect() as conn:
            created = conn.execute(select(t.store_state.c.created_at)).scalar_one()
        return utc(created).isoformat()

    def close(self) -> None:
        try:
            if self._dirty:
                self.save_index()
        except (OSError, ReadOnlyStore) as exc:  # the index is a cache: losing it costs a rebuild, never data
            log.warning("could not save the index of %s (%s); it will be rebuilt on the next open", self.target, exc)
        finally:
            self._hits.close()
            self.engine.dispose()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE); commits on success, rolls back on error."""
        self._require_writable()
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def _require_writable(self) -> None:
        """Refuse a write to a read-only store before any work (embedding, reading) is done for it."""
        if self.read_only:
            raise ReadOnlyStore(
                f"store {self.target} is read-only (its file or folder cannot be written): reads work, but nothing "
                "can be changed; copy it to a writable place to edit it"
            )

    def _bump(self, conn: Connection) -> int:
        conn.execute(update(t.store_state).where(t.store_state.c.id == 1).values(seq=t.store_state.c.seq + 1))
        return self._db_seq(conn)

    def _db_seq(self, conn: Connection) -> int:
        return int(conn.execute(select(t.store_state.c.seq)).scalar_one())

    # ------------------------------------------------------------------ the index cache
    @property
    def _index(self) -> VectorIndex:
        return self._mirror.index

    def _load_mirror(self, requested: str | None) -> None:
        """Load the index file, check it cheaply against SQL, bring it up to date or rebuild it."""
        with self.engine.connect() as conn:
            seq = self._db_seq(conn)
        mirror, problem = self._read_index_file(requested, seq)
        if not self.read_only and self.index_path.parent.is_dir():
            try:
                with file_lock(self.lock_path):
                    keep = mirror.index.faiss_file if mirror is not None else None
                    for stale in remove_leftovers(self.index_path, keep):
                        self.notices.append(f"removed {stale.name}, a partial index file left by a process that died while saving")
            except OSError as exc:  # an index folder we cannot write: the index stays in memory (see close)
                log.warning("cannot lock %s (%s); leftovers of earlier saves are not cleaned", self.lock_path, exc)
        if mirror is not None and mirror.seq < seq:
            changed = mirror.sync(self.engine, seq, self.embedder.name)
            self.notices.append(f"index was behind SQL ({changed} pamphlets changed since it was saved); updated")
            self._dirty = True
        if mirror is not None:
            problem = mirror.disagreement(self.engine)
            if problem:
                problem = f"index contents disagree with SQL ({problem}: another store's index, or a damaged one)"
                mirror = None
        if mirror is None:
            if problem:
                self.notices.append(f"{problem}; rebuilt from SQL")
            policy = requested or "auto"
            self._mirror = IndexMirror.rebuilt(self.engine, self.embedder.dim, policy, seq)
            if not problem and self._mirror.live:
                self.notices.append(f"index file {self.index_path} is missing; rebuilt from SQL")
            self._dirty = True
        else:
            self._mirror = mirror
        self._fit_kind()
        self._maybe_compact()
        if self.read_only and self._dirty:
            self.notices.append("the store is read-only: the updated index is kept in memory only")

    def _read_index_file(self, requested: str | None, seq: int) -> tuple[IndexMirror | None, str | None]:
        """The saved mirror if it is usable, else (None, why not); (None, None) if there is no file."""
        if not self.index_path.is_file():
            return None, None
        try:
            try:
                with file_lock(self.lock_path, shared=True):
                    index, meta, arrays = VectorIndex.load(self.index_path)
            except PermissionError:  # no lock file in a read-only folder: no writer can save there either
                index, meta, arrays = VectorIndex.load(self.index_path)
        except (ValueError, RuntimeError, OSError, KeyError, TypeError) as exc:  # a damaged cache is rebuilt, never trusted
            return None, f"index file {self.index_path} is unreadable ({exc})"
        if meta.get("embedding_model") != self.embedder.name or meta.get("dim") != self.embedder.dim:
            return None, f"index was built with {meta.get('embedding_model')}, the store uses {self.embedder.name}"
        if meta.get("store") != self._identity:
            return None, "index file belongs to another store (its creation time differs)"
        if int(meta.get("seq", -1)) > seq:
            return None, "index file is newer than the database (was the database restored from a copy?)"
        policy = meta.get("policy", index.kind)
        if requested is not None and requested != policy and requested != index.kind:
            return None, f"index kind changed from {index.kind} to {requested}"
        try:
            mirror = IndexMirror.from_file(index, meta, arrays)
        except ValueError as exc:
            return None, f"index file {self.index_path} is unusable ({exc})"
        if requested is not None:
            mirror.policy = requested
        return mirror, None

    def _fit_kind(self) -> None:
        """Switch between exact and approximate search when the store's size calls for it (auto policy)."""
        wanted = self._mirror.wanted_kind()
        current = self._mirror.index.kind
        if wanted == current:
            return
        self._mirror.convert(wanted, self.engine)
        self._dirty = True
        message = f"index switched from {current} to {wanted} at {self._mirror.live:,} pamphlets (auto: hnsw from {mirror_policy.AUTO_HNSW_AT:,})"
        self.notices.append(message)
        log.info(message)

    def rebuild_index(self, kind: str | None = None) -> int:
        """Rebuild the index from SQL (e.g. to change its kind, or ``auto``); returns the number indexed."""
        if kind is not None and kind not in INDEX_POLICIES:
            raise MemoryStoreError(f"unknown index kind {kind!r}; expected one of {', '.join(INDEX_POLICIES)}")
        with self._lock:
            with self.engine.connect() as conn:
                seq = self._db_seq(conn)
            self._mirror = IndexMirror.rebuilt(self.engine, self.embedder.dim, kind or self._mirror.policy, seq)
            self._dirty = True
            self.save_index()
            return len(self._mirror.index)

    def _maybe_compact(self, threshold: float = 0.3) -> None:
        index = self._mirror.index
        if index.slots > 1000 and index.dead_fraction > threshold:
            self._mirror.convert(index.kind, self.engine)
            self._dirty = True

    def save_index(self) -> None:
        """Write the index file (with the id/version mirror) atomically, under the store's lock."""
        if self.read_only:
            raise ReadOnlyStore(f"store {self.target} is read-only: its index cannot be saved")
        with self._lock:
            self._mirror.save(self.index_path, self.lock_path, {"embedding_model": self.embedder.name, "store": self._identity})
            self._dirty = False

    def sync(self) -> int:
        """Apply changes other processes committed since our last look; returns how many."""
        seq = self._hits.seq()
        with self._lock:
            if seq == self._mirror.seq:
                return 0
            changed = self._mirror.sync(self.engine, seq, self.embedder.name)
            self._dirty = True
            self._fit_kind()
            return changed

    def _applied(self, seq: int, upserts: dict[int, tuple[Entry, np.ndarray | None]], removed: Sequence[int]) -> None:
        """Mirror our own committed write in the index without re-reading it from SQL."""
        with self._lock:
            self._mirror.apply(seq, upserts, removed)
            self._dirty = True
            self._fit_kind()
            self._maybe_compact()

    # ------------------------------------------------------------------ writes
    def _embed(self, texts: Sequence[str], progress: Progress | None = None, chunk: int = 256) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), chunk):
            parts.append(self.embedder.encode(list(texts[start : start + chunk])))
            if progress is not None:
                progress(len(parts[-1]))
        return np.concatenate(parts) if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)

    def add(self, item: PamphletIn | dict[str, Any], changed_by: str = "api") -> Pamphlet:
        """Add one pamphlet; returns it as written."""
        pamphlet = item if isinstance(item, PamphletIn) else PamphletIn.model_validate(item)
        written: list[Pamphlet] = []
        self._insert([pamphlet], self._embed([pamphlet.text]), changed_by, written=written)
        return written[0]

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
        self._require_writable()
        if vectors is None:
            vectors = self._embed([p.text for p in pamphlets])
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(pamphlets), self.embedder.dim):
            raise MemoryStoreError(f"expected {len(pamphlets)} vectors of {self.embedder.dim} dims, got shape {vectors.shape}")
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
        written: list[Pamphlet] | None = None,
    ) -> list[int]:
        """Insert one batch in one transaction. ``keep`` carries ids, timestamps, versions and the
        deleted flag of imported records (their history comes from ``after``, in the same
        transaction); ``written`` receives the pamphlets exactly as inserted."""
        stamp = now()
        with self._write() as conn:
            seq = self._bump(conn)
            rows, snapshots = [], []
            for n, (item, vector) in enumerate(zip(batch, vectors)):
                extra = keep[n] if keep else {}
                snapshots.append(item.model_dump(mode="json"))
                row = {
                    **snapshots[-1],
                    "embedding": vector.tobytes(),
                    "embedding_model": self.embedder.name,
                    "embedding_dim": self.embedder.dim,
                    "content_hash": item.compute_hash(),
                    "created_at": extra.get("created_at", stamp),
                    "updated_at": extra.get("updated_at", stamp),
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
                    conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('pamphlets', 'id'), (SELECT MAX(id) FROM pamphlets))")
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
                        {"pamphlet_id": i, "version": 1, "change": "created", "changed_by": changed_by, "changed_at": stamp, "snapshot": snapshot}
                        for i, snapshot in zip(ids, snapshots)
                    ],
                )
        upserts = {
            i: (Entry(item.audience, frozenset(item.tags), rows[n]["version"], seq), vectors[n])
            for n, (i, item) in enumerate(zip(ids, batch))
            if not rows[n]["deleted"]
        }
        self._applied(seq, upserts, [])
        if written is not None:
            for i, row in zip(ids, rows):
                written.append(_written(i, row))
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
        """Change fields of a live pamphlet; re-embeds when the text changes; keeps history.
        Returns the version this call wrote (not a later read, which could be another writer's)."""
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
        stamp = now()
        version = current.version + 1
        with self._write() as conn:
            seq = self._bump(conn)
            self._write_version(conn, current.id, version, new, deleted, seq, stamp, change, changed_by, vector)
            if vector is None and not deleted and current.id not in self._mirror.index:
                stored = conn.execute(select(t.pamphlets.c.embedding).where(t.pamphlets.c.id == current.id)).scalar_one()
                vector = np.frombuffer(stored, dtype=np.float32)
        if deleted:
            self._applied(seq, {}, [current.id])
        else:
            self._applied(seq, {current.id: (Entry(new.audience, frozenset(new.tags), version, seq), vector)}, [])
        return current.model_copy(update={**new.model_dump(), "provenance": new.provenance, "version": version,
                                          "updated_at": stamp, "deleted": deleted, "content_hash": new.compute_hash()})

    def delete(self, pamphlet_id: int, changed_by: str = "api", change: str = "deleted") -> Pamphlet:
        """Soft delete: gone from search and listings at once, kept in SQL until purged."""
        current = self.get(pamphlet_id)
        if current.deleted:
            return current
        return self._commit_change(current, fields_of(current), None, changed_by, change, deleted=True)

    def restore(self, pamphlet_id: int, changed_by: str = "api") -> Pamphlet:
        current = self.get(pamphlet_id)
        if not current.deleted:
            return current
        return self._commit_change(current, fields_of(current), None, changed_by, "restored")

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Remove soft-deleted pamphlets for good (all of them, or the given ones)."""
        with self._write() as conn:
            query = select(t.pamphlets.c.id, t.pamphlets.c.deleted)
            if ids is None:
                doomed = list(conn.execute(select(t.pamphlets.c.id).where(t.pamphlets.c.deleted.is_(True))).scalars())
            else:
                found = {}
                for part in chunks(list(ids)):
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
            for chunk in chunks(doomed):
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

    def record_use(self, pamphlet_id: int, episode_id: str, reward: float) -> bool:
        """Note that an episode used a pamphlet and what reward (in [0, 1]) it got. An episode uses a
        pamphlet once: recording the same (pamphlet, episode) again (a replayed graph node) changes
        nothing and returns False."""
        if not (isinstance(reward, (int, float)) and math.isfinite(reward) and 0.0 <= reward <= 1.0):
            raise MemoryStoreError(f"reward must be a number in [0, 1], got {reward!r}")
        self.get(pamphlet_id)
        row = {"pamphlet_id": pamphlet_id, "episode_id": str(episode_id), "reward": float(reward), "used_at": now()}
        with self._write() as conn:
            return insert_ignoring_duplicates(conn, t.pamphlet_uses, [row], ("pamphlet_id", "episode_id")) > 0

    def record_lane_outcome(self, bandit: str, episode_id: str, context: str, lane: str, reward: float, cost: float) -> bool:
        """Keep what one episode taught a lane bandit (named ``bandit``: whose statistics these are).
        Once per episode: recording the same episode again changes nothing and returns False."""
        if not (math.isfinite(reward) and math.isfinite(cost)):
            raise MemoryStoreError(f"a lane outcome needs finite reward and cost, got {reward!r} and {cost!r}")
        row = {"bandit": bandit, "episode_id": str(episode_id), "context": context, "lane": lane,
               "reward": float(reward), "cost": float(cost), "recorded_at": now()}
        with self._write() as conn:
            return insert_ignoring_duplicates(conn, t.lane_outcomes, [row], ("bandit", "episode_id")) > 0

    def lane_totals(self, bandit: str) -> list[tuple[str, str, int, float, float]]:
        """(context, lane, episodes, reward sum, cost sum) of everything recorded for ``bandit``."""
        o = t.lane_outcomes.c
        query = select(o.context, o.lane, func.count(), func.sum(o.reward), func.sum(o.cost)).where(o.bandit == bandit).group_by(o.context, o.lane).order_by(o.context, o.lane)
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("lane_outcomes"):  # a read-only store of an older schema has none
                return []
            return [(c, lane, int(n), float(r), float(k)) for c, lane, n, r, k in conn.execute(query)]

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
            for part in chunks(ids):
                by_id.update({row["id"]: _to_pamphlet(row) for row in conn.execute(_SELECT_BY_IDS, {"ids": part}).mappings()})
        return [by_id[i] for i in ids if i in by_id]

    def list(
        self,
        audience: str | None = None,
        tags: Sequence[str] = (),
        include_deleted: bool = False,
        limit: int | None = 50,
        offset: int = 0,
    ) -> builtins.list[Pamphlet]:
        """Pamphlets by id, filtered by audience and tags (all given tags must be present)."""
        query = select(t.pamphlets.c.id).order_by(t.pamphlets.c.id)
        if not include_deleted:
            query = query.where(t.pamphlets.c.deleted.is_(False))
        if audience:
            query = query.where(t.pamphlets.c.audience == audience)
        for tag in tags:
            query = query.where(t.pamphlets.c.id.in_(select(t.pamphlet_tags.c.pamphlet_id).where(t.pamphlet_tags.c.tag == tag)))
        query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            ids = list(conn.execute(query).scalars())
        return self.get_many(ids)

    def summaries(self, include_deleted: bool = False, limit: int | None = None, offset: int = 0) -> builtins.list[PamphletSummary]:
        """Every pamphlet (or a slice) by id, as the lean rows a list shows and filters on: text,
        audience, tags, cue, version, deleted and times, without plan or provenance. Much faster
        than :meth:`list` over thousands of rows (raw DB-API, no validation)."""
        return self._hits.summaries(include_deleted=include_deleted, limit=limit, offset=offset)

    def all_track_records(self) -> dict[int, TrackRecord]:
        """Track records of every pamphlet used at least once (unused ones are absent)."""
        return self._hits.all_track_records()

    def search(
        self,
        query: str,
        k: int = 5,
        audience: str | None = None,
        tags: Sequence[str] = (),
        min_score: float | None = None,
    ) -> builtins.list[SearchHit]:
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
    ) -> builtins.list[tuple[int, float]]:
        """(id, cosine) of the nearest live pamphlets, filtered; no pamphlet rows are read."""
        self.sync()
        with self._lock:
            return self._mirror.index.search(vector, k, self._mirror.allowed(audience, tags), min_score)

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 5,
        audience: str | None = None,
        tags: Sequence[str] = (),
        min_score: float | None = None,
    ) -> builtins.list[SearchHit]:
        hits = self.neighbours(vector, k, audience, tags, min_score)
        pamphlets = self._hits.pamphlets([i for i, _ in hits])
        return [trusted(SearchHit, {"pamphlet": pamphlets[i], "score": score}) for i, score in hits if i in pamphlets and not pamphlets[i].deleted]

    def live_ids(self) -> builtins.list[int]:
        """Ids of every live pamphlet, as of the last sync."""
        self.sync()
        return self._mirror.live_ids()

    def history(self, pamphlet_id: int) -> builtins.list[PamphletVersion]:
        self.get(pamphlet_id)
        return self.histories([pamphlet_id])[pamphlet_id]

    def histories(self, ids: Sequence[int]) -> dict[int, builtins.list[PamphletVersion]]:
        """Every version of each pamphlet, oldest first (one query per 900 ids)."""
        out: dict[int, builtins.list[PamphletVersion]] = {i: [] for i in ids}
        v = t.pamphlet_versions.c
        with self.engine.connect() as conn:
            for part in chunks(ids):
                rows = conn.execute(select(t.pamphlet_versions).where(v.pamphlet_id.in_(part)).order_by(v.pamphlet_id, v.version, v.id)).mappings()
                for r in rows:
                    out[r["pamphlet_id"]].append(
                        PamphletVersion(
                            pamphlet_id=r["pamphlet_id"], version=r["version"], change=r["change"],
                            changed_by=r["changed_by"], changed_at=utc(r["changed_at"]), snapshot=r["snapshot"],
                        )
                    )
        return out

    def uses(self, pamphlet_id: int) -> builtins.list[dict[str, Any]]:
        return self.uses_of([pamphlet_id])[pamphlet_id]

    def uses_of(self, ids: Sequence[int]) -> dict[int, builtins.list[dict[str, Any]]]:
        """Each pamphlet's uses (episode, reward, when), in the order they were recorded."""
        out: dict[int, builtins.list[dict[str, Any]]] = {i: [] for i in ids}
        u = t.pamphlet_uses.c
        with self.engine.connect() as conn:
            for part in chunks(ids):
                for r in conn.execute(select(u.pamphlet_id, u.episode_id, u.reward, u.used_at).where(u.pamphlet_id.in_(part)).order_by(u.id)):
                    out[r.pamphlet_id].append({"episode_id": r.episode_id, "reward": r.reward, "used_at": utc(r.used_at).isoformat()})
        return out

    def track_records(self, ids: Sequence[int]) -> dict[int, TrackRecord]:
        """Uses and mean reward of each pamphlet, from the usage table."""
        records = {i: TrackRecord() for i in ids}
        if not ids:
            return records
        uses = t.pamphlet_uses.c
        rows: builtins.list[Any] = []
        with self.engine.connect() as conn:
            for part in chunks(ids):
                rows += conn.execute(
                    select(uses.pamphlet_id, func.count(), func.avg(uses.reward), func.max(uses.used_at))
                    .where(uses.pamphlet_id.in_(part))
                    .group_by(uses.pamphlet_id)
                ).all()
        for pamphlet_id, count, mean, last in rows:
            records[pamphlet_id] = TrackRecord(uses=count, mean_reward=float(mean), last_used_at=utc(last))
        return records

    def track_record(self, pamphlet_id: int) -> TrackRecord:
        self.get(pamphlet_id)
        return self.track_records([pamphlet_id])[pamphlet_id]

    def stats(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(t.pamphlets)).scalar_one()
            deleted = conn.execute(select(func.count()).where(t.pamphlets.c.deleted.is_(True))).scalar_one()
            by_audience: dict[str, int] = dict(
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
        index = self._mirror.index
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
            "index": {"kind": index.kind, "policy": self._mirror.policy, "vectors": len(index), "slots": index.slots, "path": str(self.index_path)},
            "read_only": self.read_only,
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
        stamp = now()
        with self._write() as conn:
            seq = self._bump(conn)
            self._write_version(conn, survivor.id, survivor.version + 1, merged, False, seq, stamp, "merged", changed_by)
            for other in others:
                fields = PamphletIn.model_validate(other.model_dump(include=set(SNAPSHOT_FIELDS)))
                self._write_version(conn, other.id, other.version + 1, fields, True, seq, stamp, f"merged into {survivor.id}", changed_by)
            _drop_repeated_uses(conn, [survivor.id, *members])  # the survivor keeps one use per episode
            conn.execute(update(t.pamphlet_uses).where(t.pamphlet_uses.c.pamphlet_id.in_(members)).values(pamphlet_id=survivor.id))
        self._applied(seq, {survivor.id: (Entry(merged.audience, frozenset(merged.tags), survivor.version + 1, seq), None)}, members)
        return survivor.model_copy(update={**merged.model_dump(), "provenance": merged.provenance, "version": survivor.version + 1,
                                           "updated_at": stamp, "content_hash": merged.compute_hash()})

    def _write_version(
        self, conn: Connection, pamphlet_id: int, version: int, fields: PamphletIn, deleted: bool,
        seq: int, now: Any, change: str, changed_by: str, vector: np.ndarray | None = None,
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
        self._require_writable()
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
        with self._lock:
            self._mirror = IndexMirror.rebuilt(self.engine, new.dim, self._mirror.policy, seq)
            self._dirty = True
        self.save_index()
        return len(rows)

    # ------------------------------------------------------------------ transfer and merging
    def export_jsonl(self, path: str | Path, include_deleted: bool = False) -> int:
        """Write every (live, or all) pamphlet with its history and uses as one JSON line; atomic."""
        count = 0

        def lines() -> Iterator[str]:
            nonlocal count
            offset = 0
            while page := self.list(include_deleted=include_deleted, limit=BATCH, offset=offset):
                ids = [p.id for p in page]
                histories, uses = self.histories(ids), self.uses_of(ids)
                for pamphlet in page:
                    yield export_line(pamphlet, histories[pamphlet.id], uses[pamphlet.id])
                    count += 1
                offset += len(page)

        write_export(Path(path), lines())
        return count

    def import_jsonl(
        self, path: str | Path, skip_invalid: bool = False, changed_by: str = "import", progress: Progress | None = None
    ) -> ImportReport:
        """Validate the whole file first: a bad line means nothing is imported unless ``skip_invalid``.
        Then embed with the store's embedder and insert in transactions of 1,000 lines."""
        path = Path(path)
        records, problems = read_jsonl(path)
        if problems and not skip_invalid:
            raise ImportValidationError(str(path), problems)
        if not records and not problems:
            raise MemoryStoreError(f"import file {path} holds no pamphlets")
        self._require_writable()
        report = ImportReport(skipped_lines=problems)
        with self.engine.connect() as conn:
            taken = set(conn.execute(select(t.pamphlets.c.id)).scalars())
            existing = set(conn.execute(select(t.pamphlets.c.content_hash).where(t.pamphlets.c.deleted.is_(False))).scalars())
        fresh, report.duplicates = fresh_records((r for _, r in records), existing)
        for start in range(0, len(fresh), BATCH):
            batch = fresh[start : start + BATCH]
            items = [fields_of(r) for r in batch]
            vectors = self._embed([item.text for item in items])
            keep = [kept_fields(r, taken) for r in batch]

            def write_history(conn: Connection, ids: builtins.list[int], batch: builtins.list = batch) -> None:
                versions, uses = history_rows(batch, ids, changed_by)
                if versions:
                    conn.execute(insert(t.pamphlet_versions), versions)
                if uses:  # an export of an older store may repeat a (pamphlet, episode) use: the first one counts
                    insert_ignoring_duplicates(conn, t.pamphlet_uses, uses, ("pamphlet_id", "episode_id"))

            ids = self._insert(items, vectors, changed_by, keep=keep, after=write_history)
            for record, new_id in zip(batch, ids):
                old_id = getattr(record, "id", new_id)
                if old_id != new_id:
                    report.renumbered[old_id] = new_id
            report.ids.extend(ids)
            report.imported += len(ids)
            if progress is not None:
                progress(len(batch))
        return report

    def dedup(self, threshold: float = 0.92, dry_run: bool = False, changed_by: str = "dedup", neighbours: int = 10) -> builtins.list[MergeGroup]:
        """Merge near-duplicates (cosine >= ``threshold``, same audience) into the oldest of each group."""
        check_threshold(threshold)

        def rows() -> Iterator[tuple[int, str, np.ndarray]]:
            with self.engine.connect() as conn:
                for part in chunks(self.live_ids()):
                    found = conn.execute(
                        select(t.pamphlets.c.id, t.pamphlets.c.audience, t.pamphlets.c.embedding).where(t.pamphlets.c.id.in_(part))
                    ).all()
                    for r in sorted(found, key=lambda r: r.id):
                        yield r.id, r.audience, np.frombuffer(r.embedding, dtype=np.float32)

        groups = group_duplicates(rows(), lambda v, audience: self.neighbours(v, k=neighbours, audience=audience, min_score=threshold))
        if not dry_run:
            for group in groups:
                self.merge(group.survivor, group.merged, changed_by=changed_by)
        return groups


def _drop_repeated_uses(conn: Connection, ids: Sequence[int]) -> None:
    """Before uses of ``ids`` are folded into ``ids[0]``: delete every use of an episode that an earlier
    pamphlet of ``ids`` (the survivor first) already has, so that the survivor keeps one per episode."""
    u = t.pamphlet_uses.c
    rank = {pamphlet: n for n, pamphlet in enumerate(ids)}
    rows = conn.execute(select(u.id, u.pamphlet_id, u.episode_id).where(u.pamphlet_id.in_(list(ids)))).all()
    seen: set[str] = set()
    doomed = []
    for row in sorted(rows, key=lambda r: (rank[r.pamphlet_id], r.id)):
        if row.episode_id in seen:
            doomed.append(row.id)
        seen.add(row.episode_id)
    for part in chunks(doomed):
        conn.execute(delete(t.pamphlet_uses).where(u.id.in_(part)))


# Built once: used by get() and list().
_SELECT_BY_IDS = select(*[c for c in t.pamphlets.c if c.name not in ("embedding", "seq")]).where(
    t.pamphlets.c.id.in_(bindparam("ids", expanding=True))
)


def _to_pamphlet(row: Any) -> Pamphlet:
    data = dict(row)
    data["created_at"] = utc(data["created_at"])
    data["updated_at"] = utc(data["updated_at"])
    data["tags"] = data["tags"] or []
    return Pamphlet.model_validate(data)


def _written(pamphlet_id: int, row: dict[str, Any]) -> Pamphlet:
    """The pamphlet as an insert wrote it (no read-back, which could see a later writer's change)."""
    return Pamphlet.model_validate({k: v for k, v in row.items() if k not in ("embedding", "seq")} | {"id": pamphlet_id})
