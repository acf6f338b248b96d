"""SQL is the truth and the index a cache: rebuilds, embedder switches, several processes, crashes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select

from memory import tables as t
from memory.errors import EmbedderMismatch, MemoryStoreError
from memory.store import MemoryStore

REPO = Path(__file__).resolve().parents[1]


def make_store(path, **kwargs):
    return MemoryStore.open(path, embedder=kwargs.pop("embedder", "hash:64"), **kwargs)


def fill(store, n=30):
    return store.add_many([{"text": f"note {i}: check table {i % 7} for entity {i}"} for i in range(n)])


def live_ids(path) -> set[int]:
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        ids = set(conn.execute(select(t.pamphlets.c.id).where(t.pamphlets.c.deleted.is_(False))).scalars())
    engine.dispose()
    return ids


def test_missing_index_file_is_rebuilt_and_said(tmp_path):
    path = tmp_path / "m.sqlite"
    with make_store(path) as store:
        ids = fill(store)
    store.index_path.unlink()
    with make_store(path) as reopened:
        assert any("missing; rebuilt" in n for n in reopened.notices)
        assert reopened.search("note 5: check table 5 for entity 5", k=1)[0].pamphlet.id == ids[5]
    with make_store(path) as again:
        assert again.notices == []  # the rebuilt index was saved


def test_stale_index_file_is_brought_up_to_date(tmp_path):
    path = tmp_path / "m.sqlite"
    with make_store(path) as store:
        ids = fill(store, 10)
    stale = {p: p.read_bytes() for p in tmp_path.glob("m.sqlite.index*") if not p.name.endswith(".lock")}
    with make_store(path) as store:
        store.update(ids[0], text="completely different words about OAuth consent")
        store.delete(ids[1])
        new_id = store.add({"text": "brand new pamphlet about DNS tunnelling"}).id
    for p in tmp_path.glob("m.sqlite.index*.faiss"):
        p.unlink()
    for p, data in stale.items():  # as if the process died before saving its index
        p.write_bytes(data)
    with make_store(path) as reopened:
        assert any("behind SQL" in n for n in reopened.notices)
        assert reopened.search("OAuth consent", k=1)[0].pamphlet.id == ids[0]
        assert reopened.search("DNS tunnelling", k=1)[0].pamphlet.id == new_id
        assert ids[1] not in {h.pamphlet.id for h in reopened.search("note 1", k=20)}
        assert set(reopened._index.ids()) == live_ids(path)


def test_corrupt_index_file_is_rebuilt(tmp_path):
    path = tmp_path / "m.sqlite"
    with make_store(path) as store:
        fill(store, 5)
    store.index_path.write_bytes(b"not an index at all")
    with make_store(path) as reopened:
        assert any("unreadable" in n for n in reopened.notices)
        assert len(reopened._index) == 5


def test_other_embedder_is_a_clear_error_and_reindex_switches(tmp_path):
    path = tmp_path / "m.sqlite"
    with make_store(path) as store:
        ids = fill(store, 8)
    with pytest.raises(EmbedderMismatch, match=r"built with embedder hash-64 \(64 dims\).*hash-32.*reindex"):
        make_store(path, embedder="hash:32")
    with make_store(path) as store:  # no embedder given: the store's own is used
        assert store.embedder.name == "hash-64"
        assert store.reindex("hash:32") == 8
    with make_store(path, embedder="hash:32") as store:
        assert store.get(ids[0]).embedding_dim == 32
        assert store.search("note 3: check table 3 for entity 3", k=1)[0].pamphlet.id == ids[3]
    with pytest.raises(EmbedderMismatch):
        make_store(path, embedder="hash:64")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_kinds_find_the_nearest(tmp_path, kind):
    path = tmp_path / "m.sqlite"
    with make_store(path, index_kind=kind) as store:
        ids = fill(store, 200)
        assert store.search("note 123: check table 4 for entity 123", k=1)[0].pamphlet.id == ids[123]
        store.update(ids[7], text="a pamphlet about kerberoasting")
        assert store.search("kerberoasting", k=1)[0].pamphlet.id == ids[7]
        assert store.stats()["index"]["kind"] == kind
    with make_store(path) as reopened:  # the kind is remembered by the index file
        assert reopened.stats()["index"]["kind"] == kind and reopened.notices == []


def test_unknown_index_kind_and_missing_store(tmp_path):
    with pytest.raises(MemoryStoreError, match="unknown index kind 'annoy'; expected one of auto, flat, hnsw, ivf"):
        make_store(tmp_path / "m.sqlite", index_kind="annoy")
    with pytest.raises(MemoryStoreError, match="no memory store at"):
        MemoryStore.open(tmp_path / "absent.sqlite", create=False)


def test_retired_slots_are_compacted(tmp_path):
    with make_store(tmp_path / "m.sqlite") as store:
        ids = fill(store, 1200)
        for pamphlet_id in ids[:700]:
            store.delete(pamphlet_id)
        store._maybe_compact()
        # compacted as the deletes went by (once 30% of 1,200 slots were retired), not only on open
        assert len(store._index) == 500 and store._index.slots < 900


WRITER = """
import sys
from memory.store import MemoryStore
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = MemoryStore.open(path, embedder="hash:64")
for i in range(n):
    store.add({"text": f"writer {tag} pamphlet {i}", "tags": [tag]})
store.close()
"""


def test_two_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "m.sqlite"
    make_store(path).close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, "60"], env=env, stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with make_store(path) as store:
        assert store.stats()["live"] == 120
        assert len(store.list(tags=["a"], limit=None)) == 60 and len(store.list(tags=["b"], limit=None)) == 60
        assert store.search("writer b pamphlet 59", k=1)[0].pamphlet.text == "writer b pamphlet 59"
        assert set(store._index.ids()) == live_ids(path)


IMPORTER = """
import sys
from memory.store import MemoryStore
store = MemoryStore.open(sys.argv[1], embedder="hash:64")
store.import_jsonl(sys.argv[2])
store.close()
"""


def test_killed_bulk_import_leaves_a_consistent_searchable_store(tmp_path):
    path, source = tmp_path / "m.sqlite", tmp_path / "big.jsonl"
    with make_store(path) as store:
        store.add({"text": "existing pamphlet before the import"})
    source.write_text("".join(json.dumps({"text": f"imported pamphlet number {i} about host-{i}"}) + "\n" for i in range(60_000)))
    proc = subprocess.Popen([sys.executable, "-c", IMPORTER, str(path), str(source)], env={**os.environ, "PYTHONPATH": str(REPO)})
    engine = create_engine(f"sqlite:///{path}")
    deadline = time.time() + 120
    count = 0
    while time.time() < deadline and proc.poll() is None:
        with engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(t.pamphlets)).scalar_one()
        if count >= 3001:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the import finished before it could be killed; make the file bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    engine.dispose()
    with make_store(path) as store:
        committed = store.stats()["live"]
        assert (committed - 1) % 1000 == 0 and committed > 1  # whole batches only, each one transaction
        assert set(store._index.ids()) == live_ids(path)
        last = committed - 2  # the last imported line that committed
        assert store.search(f"imported pamphlet number {last} about host-{last}", k=1)[0].pamphlet.text.endswith(f"host-{last}")
        assert all(len(store.history(i)) == 1 for i in store._index.ids()[-3:])


def test_write_failure_rolls_back_sql_and_index(tmp_path, monkeypatch):
    with make_store(tmp_path / "m.sqlite") as store:
        fill(store, 3)

        def explode(*args, **kwargs):
            raise RuntimeError("disk full")

        monkeypatch.setattr(store, "_write_version", explode)
        pid = store.list()[0].id
        with pytest.raises(RuntimeError):
            store.update(pid, text="never written")
        assert store.get(pid).version == 1 and store.get(pid).text.startswith("note 0")
        assert np.isclose(store.search("note 0: check table 0 for entity 0", k=1)[0].score, 1.0, atol=1e-5)


def test_big_indexes_are_memory_mapped_and_copied_in_at_the_first_write(tmp_path, monkeypatch):
    import memory.index

    monkeypatch.setattr(memory.index, "MMAP_FROM", 10)  # as if the store were past 250,000 pamphlets
    path = tmp_path / "m.sqlite"
    with make_store(path, index_kind="hnsw") as store:
        ids = fill(store, 40)
    with make_store(path) as store:
        assert store._index._mapped and store.notices == []
        assert store.search("note 7: check table 0 for entity 7", k=1)[0].pamphlet.id == ids[7]
        new = store.add({"text": "written after a memory-mapped open"}).id  # would abort FAISS on a mapped vector
        assert not store._index._mapped
        assert store.search("written after a memory-mapped open", k=1)[0].pamphlet.id == new
    with make_store(path) as store:
        assert len(store._index) == 41 and store.notices == []


def test_auto_index_switches_to_hnsw_past_the_threshold_and_says_so(tmp_path, monkeypatch):
    import memory.mirror

    monkeypatch.setattr(memory.mirror, "AUTO_HNSW_AT", 100)
    monkeypatch.setattr(memory.mirror, "AUTO_FLAT_BELOW", 50)
    path = tmp_path / "m.sqlite"
    with make_store(path) as store:
        ids = fill(store, 99)
        assert store._index.kind == "flat" and store.stats()["index"]["policy"] == "auto"
        ids += fill(store, 1)
        assert store._index.kind == "hnsw" and any("switched from flat to hnsw at 100" in n for n in store.notices)
        assert store.search("note 42: check table 0 for entity 42", k=1)[0].pamphlet.id == ids[42]
        for pamphlet_id in ids[:60]:
            store.delete(pamphlet_id)
        assert store._index.kind == "flat"  # well below the threshold again (hysteresis: under 50)
    with make_store(path) as store:
        assert store._index.kind == "flat" and store.notices == []
    with make_store(path, index_kind="hnsw") as store:  # an explicit kind is kept whatever the size
        assert store._index.kind == "hnsw" and store.stats()["index"]["policy"] == "hnsw"


def test_hnsw_keeps_half_precision_vectors_and_exact_ones_come_back_from_sql(tmp_path):
    """HNSW stores vectors in float16 (half the memory); the stored-vector check allows that rounding and no more,
    and an index rebuilt as flat reads exact vectors from SQL, not the rounded ones."""
    import faiss

    from memory.index import VECTOR_TOLERANCE

    path = tmp_path / "m.sqlite"
    with make_store(path, index_kind="hnsw") as store:
        ids = fill(store, 40)
        index = store._index
        assert isinstance(index._index, faiss.IndexHNSWSQ)
        stored = store.embedder.encode([f"note {i}: check table {i % 7} for entity {i}" for i in range(40)])
        error = np.abs(index.vectors(ids) - stored).max()
        assert 0 < error <= VECTOR_TOLERANCE["hnsw"]  # rounded, within what the check allows
    with make_store(path, index_kind="hnsw") as store:
        assert store.notices == []  # reopened: the rounding is not mistaken for a foreign index
        assert store.rebuild_index("flat") == 40 and store._index.kind == "flat"
        assert np.array_equal(store._index.vectors(ids), stored)
    with make_store(path, index_kind="hnsw") as store:
        assert store._index.kind == "hnsw"
        store._mirror.convert("flat", store.engine)  # the automatic switch back to exact search
        assert np.array_equal(store._index.vectors(ids), stored)


def test_exact_search_leaves_the_callers_faiss_threads_alone():
    import faiss

    from memory.index import ONE_THREAD_FROM, VectorIndex

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((ONE_THREAD_FROM + 10, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(16, "flat")
    index.upsert(range(1, len(vectors) + 1), vectors)
    before = faiss.omp_get_max_threads()
    assert index.search(vectors[41], k=3)[0][0] == 42  # searched on the one-thread worker
    assert faiss.omp_get_max_threads() == before  # never flipped, not even for a moment in this thread
