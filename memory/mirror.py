"""IndexMirror: the FAISS index and the filter metadata of live pamphlets, kept in step with SQL.

SQL is the truth. The mirror holds, per live pamphlet id, its version, row sequence stamp,
audience and tag set (dense numpy columns indexed by id), plus the vectors in a
:class:`VectorIndex`. It is saved beside the database as one file, so that opening a big store
reads one file instead of every row; on open the file is checked cheaply against SQL (embedder,
store identity, sequence stamp, and a sample of vectors compared with the stored embeddings) and
brought up to date, or rebuilt with a note when it cannot be trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from memory import tables as t
from memory.errors import EmbedderMismatch
from memory.index import INDEX_KINDS, VECTOR_TOLERANCE, IndexKind, VectorIndex
from memory.locking import file_lock
from memory.sqlutil import chunks

log = logging.getLogger(__name__)

# Below this many live pamphlets the exact (flat) index is used, above it HNSW. Measured with
# `atlas memory bench --text`: flat search grows linearly (about 1 ms per 10k pamphlets here, idle)
# while HNSW stays near 0.3-0.5 ms with recall@10 >= 0.98 on real embeddings; they cross near 10-20k.
AUTO_HNSW_AT = 20_000
AUTO_FLAT_BELOW = AUTO_HNSW_AT // 2  # hysteresis: shrink back to exact only well below the threshold
SAMPLE_CHECK = 256  # vectors compared with SQL on every open (all of them in smaller stores)
INDEX_POLICIES = ("auto", *INDEX_KINDS)
AUDIENCE_CODES = {"student": 1, "teacher": 2}


@dataclass(frozen=True)
class Entry:
    """What search filters need about one live pamphlet."""

    audience: str
    tags: frozenset[str]
    version: int
    seq: int


def auto_kind(live: int, current: IndexKind | None) -> IndexKind:
    if live >= AUTO_HNSW_AT:
        return "hnsw"
    if current == "hnsw" and live >= AUTO_FLAT_BELOW:
        return "hnsw"
    return "flat"


class IndexMirror:
    """Filter metadata and vectors of the live pamphlets, as of SQL sequence stamp ``seq``."""

    def __init__(self, dim: int, kind: IndexKind, policy: str) -> None:
        self.index = VectorIndex(dim, kind)
        self.policy = policy  # "auto" or a fixed kind
        self.seq = 0
        self.version = np.zeros(0, dtype=np.int32)  # 0: not live
        self.row_seq = np.zeros(0, dtype=np.int64)
        self.audience = np.zeros(0, dtype=np.int8)
        self.tagset = np.zeros(0, dtype=np.int32)
        self.tagsets: list[frozenset[str]] = [frozenset()]
        self._tagset_of: dict[frozenset[str], int] = {frozenset(): 0}
        self._tag_masks: dict[frozenset[str], tuple[int, np.ndarray]] = {}
        self.live = 0

    # ---- entries --------------------------------------------------------------------------
    def __contains__(self, pamphlet_id: int) -> bool:
        return 0 <= pamphlet_id < len(self.version) and self.version[pamphlet_id] > 0

    def live_ids(self) -> list[int]:
        return np.flatnonzero(self.version > 0).tolist()

    def entry(self, pamphlet_id: int) -> Entry | None:
        if pamphlet_id not in self:
            return None
        code = int(self.audience[pamphlet_id])
        audience = next(a for a, c in AUDIENCE_CODES.items() if c == code)
        return Entry(audience, self.tagsets[self.tagset[pamphlet_id]], int(self.version[pamphlet_id]), int(self.row_seq[pamphlet_id]))

    def set_entries(self, entries: dict[int, Entry]) -> None:
        if not entries:
            return
        ids = np.fromiter(entries, dtype=np.int64, count=len(entries))
        size = int(ids.max()) + 1
        if size > len(self.version):
            grow = max(size, 2 * len(self.version), 1024)
            for name in ("version", "row_seq", "audience", "tagset"):
                column = getattr(self, name)
                bigger = np.zeros(grow, dtype=column.dtype)
                bigger[: len(column)] = column
                setattr(self, name, bigger)
        was_live = np.count_nonzero(self.version[ids] > 0)
        self.version[ids] = [e.version for e in entries.values()]
        self.row_seq[ids] = [e.seq for e in entries.values()]
        self.audience[ids] = [AUDIENCE_CODES[e.audience] for e in entries.values()]
        self.tagset[ids] = [self._intern(e.tags) for e in entries.values()]
        self.live += int(len(ids) - was_live)

    def drop_entries(self, ids: Iterable[int]) -> None:
        ids = np.asarray([i for i in ids if i in self], dtype=np.int64)
        if len(ids):
            self.version[ids] = 0
            self.live -= len(ids)
        self.index.remove(ids)

    def _intern(self, tags: frozenset[str]) -> int:
        found = self._tagset_of.get(tags)
        if found is None:
            found = self._tagset_of[tags] = len(self.tagsets)
            self.tagsets.append(tags)
        return found

    def allowed(self, audience: str | None, tags: Sequence[str]) -> Any:
        """A vectorised filter (ids -> mask) for the index, or None when nothing is filtered."""
        wanted = frozenset(tags)
        if audience is None and not wanted:
            return None
        code = AUDIENCE_CODES.get(audience, -1) if audience is not None else None
        tag_ok = self._tag_mask(wanted) if wanted else None
        version, audiences, tagset = self.version, self.audience, self.tagset

        def allowed(ids: np.ndarray) -> np.ndarray:
            inside = ids < len(version)
            ids = np.where(inside, ids, 0)
            mask = inside & (version[ids] > 0)
            if code is not None:
                mask &= audiences[ids] == code
            if tag_ok is not None:
                mask &= tag_ok[tagset[ids]]
            return mask

        return allowed

    def _tag_mask(self, wanted: frozenset[str]) -> np.ndarray:
        """Which interned tag sets hold every wanted tag (cached until a new tag set appears)."""
        cached = self._tag_masks.get(wanted)
        if cached is None or cached[0] != len(self.tagsets):
            cached = (len(self.tagsets), np.fromiter((wanted <= s for s in self.tagsets), dtype=bool, count=len(self.tagsets)))
            self._tag_masks[wanted] = cached
        return cached[1]

    # ---- reading SQL ------------------------------------------------------------------------
    @staticmethod
    def read_entries(engine: Engine, ids: Sequence[int] | None = None) -> dict[int, Entry]:
        """Filter metadata of live pamphlets (all, or ``ids``) from plain columns and the tags table."""
        p, tg = t.pamphlets.c, t.pamphlet_tags.c
        conditions = [None] if ids is None else [p.id.in_(part) for part in chunks(ids)]
        entries: dict[int, Entry] = {}
        shared: dict[tuple[str, ...], frozenset[str]] = {}  # many pamphlets share one tag set
        with engine.connect() as conn:
            for condition in conditions:
                live = p.deleted.is_(False) if condition is None else (p.deleted.is_(False) & condition)
                tags: dict[int, list[str]] = {}
                for pamphlet_id, tag in conn.execute(select(tg.pamphlet_id, tg.tag).join(t.pamphlets, p.id == tg.pamphlet_id).where(live)):
                    tags.setdefault(pamphlet_id, []).append(tag)
                for pamphlet_id, audience, version, seq in conn.execute(select(p.id, p.audience, p.version, p.seq).where(live)):
                    key = tuple(sorted(tags.get(pamphlet_id, ())))
                    entries[pamphlet_id] = Entry(audience, shared.setdefault(key, frozenset(key)), version, seq)
        return entries

    def index_vectors(self, engine: Engine, ids: Sequence[int]) -> None:
        """Read stored vectors of ``ids`` from SQL into the index."""
        with engine.connect() as conn:
            for part in chunks(ids):
                rows = conn.execute(select(t.pamphlets.c.id, t.pamphlets.c.embedding).where(t.pamphlets.c.id.in_(part))).all()
                if rows:
                    self.index.upsert([r.id for r in rows], np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows]))

    @classmethod
    def rebuilt(cls, engine: Engine, dim: int, policy: str, seq: int, entries: dict[int, Entry] | None = None) -> IndexMirror:
        """A fresh mirror from SQL; ``entries`` saves re-reading metadata the caller just read."""
        entries = cls.read_entries(engine) if entries is None else entries
        kind: IndexKind = auto_kind(len(entries), None) if policy == "auto" else policy  # type: ignore[assignment]
        mirror = cls(dim, kind, policy)
        mirror.set_entries(entries)
        mirror.index_vectors(engine, sorted(entries))
        mirror.seq = seq
        log.info("rebuilt %s index of %d pamphlets", kind, len(entries))
        return mirror

    def sync(self, engine: Engine, seq: int, embedder_name: str) -> int:
        """Apply what other processes committed after ``self.seq`` up to ``seq``; returns how many."""
        p = t.pamphlets.c
        with engine.connect() as conn:
            model = conn.execute(select(t.store_state.c.embedding_model)).scalar_one()
            if model != embedder_name:
                raise EmbedderMismatch(
                    f"another process switched this store to embedder {model} while it was open with {embedder_name}; "
                    "open it again"
                )
            changed = conn.execute(select(p.id, p.deleted, p.version).where(p.seq > self.seq)).all()
            purged = conn.execute(select(t.tombstones.c.pamphlet_id).where(t.tombstones.c.seq > self.seq)).scalars().all()
        gone = [r.id for r in changed if r.deleted] + list(purged)
        live = [r.id for r in changed if not r.deleted]
        fresh = self.read_entries(engine, live)
        moved = [i for i, e in fresh.items() if i not in self.index or i not in self or int(self.version[i]) != e.version]
        self.index_vectors(engine, moved)
        self.drop_entries(gone)
        self.set_entries(fresh)
        self.seq = seq
        return len(gone) + len(fresh)

    def apply(self, seq: int, upserts: dict[int, tuple[Entry, np.ndarray | None]], removed: Iterable[int]) -> None:
        """Mirror our own committed write without re-reading it from SQL."""
        vectors = [(i, v) for i, (_, v) in upserts.items() if v is not None]
        if vectors:
            self.index.upsert([i for i, _ in vectors], np.stack([v for _, v in vectors]))
        self.drop_entries(removed)
        self.set_entries({i: entry for i, (entry, _) in upserts.items()})
        if self.seq == seq - 1:  # nobody else wrote in between: we are current
            self.seq = seq

    # ---- the index kind ---------------------------------------------------------------------
    def wanted_kind(self) -> IndexKind:
        return auto_kind(self.live, self.index.kind) if self.policy == "auto" else self.policy  # type: ignore[return-value]

    def convert(self, kind: IndexKind, engine: Engine) -> None:
        """Rebuild the index as ``kind`` from its own vectors (no SQL read), or from SQL when its vectors are rounded
        (HNSW's half precision) and ``kind`` keeps them exact."""
        if VECTOR_TOLERANCE[self.index.kind] > VECTOR_TOLERANCE[kind]:
            live = self.index.ids()
            self.index = VectorIndex(self.index.dim, kind)
            self.index_vectors(engine, live)
            return
        ids, vectors = self.index.live_vectors()
        fresh = VectorIndex(self.index.dim, kind)
        for start in range(0, len(ids), 50_000):
            fresh.upsert(ids[start : start + 50_000], vectors[start : start + 50_000])
        self.index = fresh

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: Path, lock_path: Path, meta: dict[str, Any]) -> None:
        ids = np.flatnonzero(self.version > 0)
        arrays: dict[str, np.ndarray] = {
            "entry_ids": ids.astype(np.int64),
            "entry_versions": self.version[ids].astype(np.int64),
            "entry_seqs": self.row_seq[ids],
            "entry_audiences": self.audience[ids],
            "entry_tagsets": self.tagset[ids],
        }
        meta = {**meta, "seq": self.seq, "policy": self.policy, "tagsets": [sorted(s) for s in self.tagsets]}
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(lock_path):
            self.index.save(path, meta, arrays)

    @classmethod
    def from_file(cls, index: VectorIndex, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> IndexMirror:
        """Rebuild the in-memory mirror from a loaded file. Raises ValueError if its parts disagree."""
        names = ("entry_ids", "entry_versions", "entry_seqs", "entry_audiences", "entry_tagsets")
        if any(n not in arrays for n in names) or "tagsets" not in meta:
            raise ValueError("index file lacks its pamphlet list")
        mirror = cls(index.dim, index.kind, meta.get("policy", index.kind))
        mirror.index = index
        ids = arrays["entry_ids"].astype(np.int64)
        if len(ids) != len(index) or not np.array_equal(np.sort(ids), np.asarray(index.ids(), dtype=np.int64)):
            raise ValueError("index file slot map and pamphlet list disagree")
        mirror.tagsets = [frozenset(s) for s in meta["tagsets"]]
        mirror._tagset_of = {s: n for n, s in enumerate(mirror.tagsets)}
        tagsets = arrays["entry_tagsets"].astype(np.int32)
        audiences = arrays["entry_audiences"].astype(np.int8)
        if len(ids) and (tagsets.max() >= len(mirror.tagsets) or tagsets.min() < 0 or not np.isin(audiences, list(AUDIENCE_CODES.values())).all()):
            raise ValueError("index file pamphlet list is damaged")
        size = int(ids.max()) + 1 if len(ids) else 0
        mirror.version = np.zeros(size, dtype=np.int32)
        mirror.row_seq = np.zeros(size, dtype=np.int64)
        mirror.audience = np.zeros(size, dtype=np.int8)
        mirror.tagset = np.zeros(size, dtype=np.int32)
        mirror.version[ids] = arrays["entry_versions"]
        mirror.row_seq[ids] = arrays["entry_seqs"]
        mirror.audience[ids] = audiences
        mirror.tagset[ids] = tagsets
        mirror.live = len(ids)
        mirror.seq = int(meta.get("seq", 0))
        return mirror

    def disagreement(self, engine: Engine, sample: int = SAMPLE_CHECK) -> str | None:
        """Compare a seeded sample of indexed vectors (all of them in small stores) with SQL's
        stored embeddings and versions; a description of what disagrees, or None."""
        ids = np.flatnonzero(self.version > 0)
        if len(ids) > sample:
            ids = np.sort(np.random.default_rng(self.seq).choice(ids, sample, replace=False))
        if not len(ids):
            return None
        stored: dict[int, tuple[int, bytes]] = {}
        with engine.connect() as conn:
            for part in chunks(ids.tolist()):
                p = t.pamphlets.c
                for r in conn.execute(select(p.id, p.version, p.deleted, p.embedding).where(p.id.in_(part))):
                    if not r.deleted:
                        stored[r.id] = (r.version, r.embedding)
        missing = [i for i in ids.tolist() if i not in stored or stored[i][0] != self.version[i]]
        if missing:
            return f"{len(missing)} of {len(ids)} sampled pamphlets are not in SQL as indexed"
        expected = np.stack([np.frombuffer(stored[i][1], dtype=np.float32) for i in ids.tolist()])
        got = self.index.vectors(ids)
        wrong = int(np.count_nonzero(np.abs(expected - got).max(axis=1) > VECTOR_TOLERANCE[self.index.kind]))
        if wrong:
            return f"{wrong} of {len(ids)} sampled vectors differ from the stored embeddings"
        return None
