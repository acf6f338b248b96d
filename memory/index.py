"""FAISS vector index keyed by pamphlet id, persisted as one file beside the database.

FAISS stores vectors in *slots*; we keep slot -> pamphlet id ourselves (and id -> slot in a dense
array, as ids are small consecutive numbers). An update adds a new slot and retires the old one,
a delete retires a slot, and retired slots are skipped at search time. This works the same for
flat, HNSW (which cannot remove vectors) and IVF indexes; the store rebuilds the index from SQL
when too many slots are retired.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "hnsw", "ivf"]
INDEX_KINDS: tuple[IndexKind, ...] = ("flat", "hnsw", "ivf")
DEAD = -1
MAGIC = b"ATLASIDX2"
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# efSearch 128 gives recall@10 >= 0.98 on 100k real MiniLM embeddings (`atlas memory bench --text`);
# the synthetic clusters of the vector-only mode are harder and need 512 for 0.96.
DEFAULT_EF_SEARCH = 128
# HNSW keeps its vectors in half precision: half the bytes of float32 (1M x 384 dimensions: 0.77 GB, not 1.5 GB),
# no training, and faster searches (less memory to read per distance). A stored component of a unit vector is off by
# at most 2**-11 of its size; the stored-vector check allows that much (VECTOR_TOLERANCE).
VECTOR_TOLERANCE: dict[str, float] = {"flat": 1e-5, "hnsw": 1e-3, "ivf": 1e-5}
WRITE_CHUNK = 64 << 20
# Memory-map FAISS files from this size on: opening then reads nothing, at the price of page faults
# on the first searches; smaller indexes are read whole (0.15 s at 100k here) and search warm at once.
MMAP_FROM = 250_000
ONE_THREAD_FROM = 5_000  # smaller exact scans take less time than handing them to the worker thread
AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400  # linkat(2) constants (Linux)

Allowed = Callable[[np.ndarray], np.ndarray]  # ids -> boolean mask of the ones a filter keeps


def _new_faiss_index(kind: IndexKind, dim: int, hnsw_m: int, ef_search: int) -> faiss.Index | None:
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return index
    if kind == "ivf":
        return None  # built lazily: the number of lists depends on how many vectors train it
    raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(INDEX_KINDS)}")


_one_thread_pool: ThreadPoolExecutor | None = None


def one_thread_search(index: faiss.Index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A single exact query is memory-bound: FAISS's OpenMP threads only add overhead (and are
    ruinous on a loaded machine: 28 ms on one thread against 86 ms on two for 100k x 384 here).
    OpenMP's thread count is a per-thread setting, so flat searches run on one worker thread set
    to one OpenMP thread once; the caller's threads keep their own setting."""
    global _one_thread_pool
    if _one_thread_pool is None:
        _one_thread_pool = ThreadPoolExecutor(1, thread_name_prefix="faiss-1", initializer=faiss.omp_set_num_threads, initargs=(1,))
    return _one_thread_pool.submit(index.search, query, k).result()


def _search(index: Any, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One query through FAISS's C entry point: the Python wrapper's argument checks and
    conversions cost tens of microseconds, a tenth of an approximate search."""
    scores = np.empty((1, k), dtype=np.float32)
    slots = np.empty((1, k), dtype=np.int64)
    index.search_c(1, faiss.swig_ptr(query), k, faiss.swig_ptr(scores), faiss.swig_ptr(slots))
    return scores, slots


def _grown(array: np.ndarray, size: int, fill: int) -> np.ndarray:
    """``array`` with room for at least ``size`` items (capacity doubles, so appends are amortised O(1))."""
    if size <= len(array):
        return array
    bigger = np.full(max(size, 2 * len(array), 1024), fill, dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


class VectorIndex:
    """Inner-product search over L2-normalised vectors (scores are cosine similarities)."""

    def __init__(
        self, dim: int, kind: IndexKind = "flat", hnsw_m: int = HNSW_M, ef_search: int = DEFAULT_EF_SEARCH, nprobe: int = 16
    ) -> None:
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(INDEX_KINDS)}")
        self.dim, self.kind = dim, kind
        self.hnsw_m, self.ef_search, self.nprobe = hnsw_m, ef_search, nprobe
        self._index: Any = _new_faiss_index(kind, dim, hnsw_m, ef_search)  # None until an IVF index is trained
        self._slots = np.empty(0, dtype=np.int64)  # slot -> pamphlet id (DEAD once retired); capacity >= slots
        self._nslots = 0
        self._slot_of = np.empty(0, dtype=np.int64)  # pamphlet id -> slot, DEAD if absent
        self._live = 0
        self._mapped = False
        self.faiss_file: str | None = None  # the FAISS file beside the header, once saved or loaded

    # ---- contents -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._live

    def __contains__(self, pamphlet_id: int) -> bool:
        return 0 <= pamphlet_id < len(self._slot_of) and self._slot_of[pamphlet_id] != DEAD

    @property
    def slots(self) -> int:
        return self._nslots

    @property
    def slot_ids(self) -> np.ndarray:
        return self._slots[: self._nslots]

    @property
    def dead_fraction(self) -> float:
        return 1.0 - self._live / self._nslots if self._nslots else 0.0

    def ids(self) -> list[int]:
        return np.flatnonzero(self._slot_of != DEAD).tolist()

    def upsert(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        ids = np.asarray([int(i) for i in ids], dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if not len(ids):
            return
        if len(np.unique(ids)) != len(ids):
            raise ValueError("upsert got the same id twice in one call")
        if ids.min() < 0:
            raise ValueError("pamphlet ids must not be negative")
        self.remove(ids)
        self._ensure_built(vectors)
        if self._mapped:  # a memory-mapped index is read-only: take an owned copy before the first write
            self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
            if self.kind == "hnsw":
                self._index.hnsw.efSearch = self.ef_search
            self._mapped = False
        first = self._index.ntotal
        self._index.add(vectors)
        self._slots = _grown(self._slots, first + len(ids), DEAD)
        self._slots[first : first + len(ids)] = ids
        self._nslots = first + len(ids)
        self._slot_of = _grown(self._slot_of, int(ids.max()) + 1, DEAD)
        self._slot_of[ids] = np.arange(first, first + len(ids))
        self._live += len(ids)

    def remove(self, ids: Iterable[int]) -> None:
        ids = np.asarray([int(i) for i in ids], dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < len(self._slot_of))]
        if not len(ids):
            return
        slots = self._slot_of[ids]
        present = slots != DEAD
        self._slots[slots[present]] = DEAD
        self._slot_of[ids[present]] = DEAD
        self._live -= int(np.count_nonzero(present))

    def vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors of ``ids`` (all must be present), e.g. to check them against SQL."""
        ids = np.asarray(list(ids), dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        slots = self._slot_of[ids]
        return np.stack([self._index.reconstruct(int(s)) for s in slots]).astype(np.float32)

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live entry, in slot order (to rebuild as another kind without SQL)."""
        live = np.flatnonzero(self.slot_ids != DEAD)
        if not len(live):
            return np.empty(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        if self.kind == "flat":
            vectors = faiss.rev_swig_ptr(self._index.get_xb(), self._nslots * self.dim).reshape(self._nslots, self.dim)[live]
        else:
            vectors = np.stack([self._index.reconstruct(int(s)) for s in live])
        return self.slot_ids[live].copy(), np.ascontiguousarray(vectors, dtype=np.float32)

    def _ensure_built(self, vectors: np.ndarray) -> None:
        if self._index is not None:
            return
        # IVF: about sqrt(n) lists, trained on the first vectors it sees (a rebuild retrains).
        nlist = max(1, min(4096, int(np.sqrt(len(vectors)))))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(self.nprobe, nlist)
        index.set_direct_map_type(faiss.DirectMap.Array)  # so stored vectors can be read back
        self._quantizer = quantizer  # keep it alive alongside the index
        self._index = index

    # ---- search ---------------------------------------------------------------------------
    def search(
        self,
        query: np.ndarray,
        k: int,
        allowed: Allowed | None = None,
        min_score: float | None = None,
    ) -> list[tuple[int, float]]:
        """Top-k (id, score) for one query, skipping retired slots and ids ``allowed`` rejects.

        Fetches more than k when filters or retired slots are in the way, widening until k
        results are found or the whole index has been considered."""
        if self._index is None or self._live == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        total = self._index.ntotal
        fetch = min(total, max(k, int(k / max(1e-3, 1.0 - self.dead_fraction))) + (k if allowed else 0))
        while True:
            if self.kind == "flat" and total >= ONE_THREAD_FROM:
                scores, slots = one_thread_search(self._index, query, fetch)
            else:
                scores, slots = _search(self._index, query, fetch)
            # a few dozen candidates: plain Python over lists beats a dozen tiny numpy calls
            slot_ids = self._slots
            found = [(int(slot_ids[s]), score) for s, score in zip(slots[0].tolist(), scores[0].tolist()) if s >= 0]
            found = [(i, score) for i, score in found if i != DEAD]
            if allowed is not None and found:
                mask = allowed(np.fromiter((i for i, _ in found), dtype=np.int64, count=len(found))).tolist()
                found = [hit for hit, ok in zip(found, mask) if ok]
            if min_score is not None:
                found = [(i, score) for i, score in found if score >= min_score]
            chosen = found[:k]
            last = float(scores[0][-1]) if scores.shape[1] else None
            if len(chosen) == k or fetch >= total or (min_score is not None and last is not None and last < min_score):
                return chosen
            fetch = min(total, fetch * 4)

    # ---- persistence ----------------------------------------------------------------------
    def save(self, path: Path, meta: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Atomically write the slot map, meta and extra arrays to ``path`` and the FAISS index to a
        file beside it (``path.<token>.faiss``, named in the header), so it can be memory-mapped.

        Layout of ``path``: magic, a JSON header naming each section's dtype, byte length and CRC-32,
        then the raw sections. Each file is written unnamed (O_TMPFILE) and linked into place once
        complete, the FAISS file first, so a process killed while saving leaves nothing behind and
        the header never names a missing or partial FAISS file. Older FAISS files are removed."""
        sections = {name: np.ascontiguousarray(a) for name, a in {"slot_ids": self.slot_ids, **(arrays or {})}.items()}
        faiss_name = None
        if self._index is not None:
            faiss_name = f"{path.name}.{secrets.token_hex(8)}.faiss"
            write_atomically(path.with_name(faiss_name), writer=lambda target: faiss.write_index(self._index, target))
        header = {
            "meta": {**meta, "kind": self.kind, "dim": self.dim, "hnsw_m": self.hnsw_m, "ef_search": self.ef_search, "nprobe": self.nprobe},
            "sections": [[name, str(a.dtype), int(a.nbytes), zlib.crc32(a.data.cast("B"))] for name, a in sections.items()],
            "faiss_file": faiss_name,
            "faiss_ntotal": self._index.ntotal if self._index is not None else 0,
        }
        blob = json.dumps(header).encode()
        write_atomically(path, [MAGIC + len(blob).to_bytes(8, "little") + blob, *(a.data.cast("B") for a in sections.values())])
        self.faiss_file = faiss_name
        remove_leftovers(path, keep=faiss_name)

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> tuple[VectorIndex, dict, dict[str, np.ndarray]]:
        """The index, its meta, and the extra arrays saved with it. Raises ValueError if damaged
        (wrong magic, truncated, trailing bytes, a section failing its checksum, a missing FAISS
        file). Flat and HNSW indexes of MMAP_FROM vectors or more are memory-mapped (read on demand;
        copied in at the first write)."""
        raw = np.fromfile(path, dtype=np.uint8)
        if raw[: len(MAGIC)].tobytes() != MAGIC:
            raise ValueError(f"{path} is not an atlas index file (or one of an older format)")
        size = int.from_bytes(raw[len(MAGIC) : len(MAGIC) + 8].tobytes(), "little")
        offset = len(MAGIC) + 8 + size
        header = json.loads(raw[len(MAGIC) + 8 : offset].tobytes())
        arrays: dict[str, np.ndarray] = {}
        for name, dtype, nbytes, crc in header["sections"]:
            if offset + nbytes > len(raw):
                raise ValueError(f"{path} is truncated (section {name})")
            part = raw[offset : offset + nbytes]
            if zlib.crc32(part.data) != crc:
                raise ValueError(f"{path}: section {name} fails its checksum (the file was changed or damaged)")
            arrays[name] = part.view(dtype)
            offset += nbytes
        if offset != len(raw):
            raise ValueError(f"{path} has {len(raw) - offset} unexpected trailing bytes")
        meta = header["meta"]
        index = cls(meta["dim"], meta["kind"], meta["hnsw_m"], meta["ef_search"], meta["nprobe"])
        slots = arrays.pop("slot_ids").astype(np.int64)
        index._slots, index._nslots = slots, len(slots)
        index.faiss_file = header.get("faiss_file")
        if index.faiss_file:
            faiss_path = path.with_name(header["faiss_file"])
            if not faiss_path.is_file():
                raise ValueError(f"{path} names {faiss_path.name}, which is missing")
            index._mapped = mmap and index.kind in ("flat", "hnsw") and header["faiss_ntotal"] >= MMAP_FROM
            index._index = faiss.read_index(str(faiss_path), faiss.IO_FLAG_MMAP_IFC if index._mapped else 0)
            if index._index.ntotal != header["faiss_ntotal"] or index._index.d != index.dim:
                raise ValueError(f"{faiss_path} does not hold the index {path} describes")
            if index.kind == "hnsw":
                index._index.hnsw.efSearch = index.ef_search
        live = np.flatnonzero(slots != DEAD)
        index._slot_of = np.full(int(slots[live].max()) + 1 if len(live) else 0, DEAD, dtype=np.int64)
        index._slot_of[slots[live]] = live
        index._live = len(live)
        if index._index is not None and index._index.ntotal != len(slots):
            raise ValueError(f"{path}: slot map ({len(slots)}) and FAISS index ({index._index.ntotal}) disagree")
        if len(np.unique(slots[live])) != len(live):
            raise ValueError(f"{path}: slot map names a pamphlet twice")
        return index, meta, arrays


def _write_part(fd: int, part: memoryview) -> None:
    for start in range(0, len(part), WRITE_CHUNK):
        view = part[start : start + WRITE_CHUNK]
        while len(view):
            view = view[os.write(fd, view) :]


def _link_unnamed(fd: int, name: Path) -> None:
    """Give an O_TMPFILE file a name: linkat(AT_SYMLINK_FOLLOW) on its /proc/self/fd entry
    (os.link cannot: it links the /proc symlink itself, across file systems)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.linkat(AT_FDCWD, f"/proc/self/fd/{fd}".encode(), AT_FDCWD, os.fsencode(name), AT_SYMLINK_FOLLOW) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(name))


def write_atomically(path: Path, parts: Iterable[bytes | memoryview] = (), writer: Callable[[str], None] | None = None) -> None:
    """Write ``parts`` (or let ``writer`` write to the path it is given) to ``path`` all-or-nothing:
    into an unnamed file in the same folder, linked into place after fsync, or a named temp file
    where the file system cannot do that."""
    folder = path.parent
    named = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o644)
        unnamed = True
    except (AttributeError, OSError):
        fd = os.open(named, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
        unnamed = False
    try:
        if writer is not None:
            writer(f"/proc/self/fd/{fd}" if unnamed else str(named))
        for part in parts:
            _write_part(fd, memoryview(part).cast("B"))
        os.fsync(fd)
        if unnamed:
            named.unlink(missing_ok=True)
            _link_unnamed(fd, named)
    except BaseException:
        os.close(fd)
        named.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(named, path)


def remove_leftovers(path: Path, keep: str | None) -> list[Path]:
    """Delete what dead saves left beside ``path``: temp files of processes no longer alive, and
    FAISS files other than ``keep`` (the one the header names). Call it under the exclusive lock."""
    removed = []
    for candidate in path.parent.glob(f"{path.name}*"):
        name = candidate.name
        if ".tmp-" in name:
            pid = name.rsplit("-", 1)[-1]
            if not pid.isdigit() or _alive(int(pid)):
                continue
        elif not (name.endswith(".faiss") and name != keep):
            continue
        try:
            candidate.unlink()
            removed.append(candidate)
        except OSError as exc:  # a read-only folder: nothing reads these files, so they can stay
            log.debug("cannot remove %s: %s", candidate, exc)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
