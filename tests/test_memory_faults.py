"""Faults and bad inputs that used to break the memory (issue 16), each reproduced and now handled."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from memory.errors import ImportValidationError, MemoryStoreError, ReadOnlyStore
from memory.index import VectorIndex
from memory.store import MemoryStore
from tests.test_cli import atlas_process

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def fill(store, n=50):
    return store.add_many([{"text": f"lesson {i}: pivot from host-{i} to account user{i} in table {i % 7}"} for i in range(n)])


CREATOR = """
import sys, time
from memory.errors import MemoryStoreError
from memory.store import MemoryStore
target, index_dir, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
try:
    store = MemoryStore.open(target, embedder="hash:64", index_dir=index_dir)
    store.add({"text": "created concurrently " + sys.argv[4]})
    store.close()
    print("ok")
except MemoryStoreError as exc:
    print("store-error", exc)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_five_processes_creating_one_new_store_all_succeed(backend, tmp_path, request):
    target = str(tmp_path / "new.sqlite") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    start = time.time() + 4.0  # every process has imported and waits for the same moment
    procs = [
        subprocess.Popen([sys.executable, "-c", CREATOR, target, str(tmp_path / f"i{n}"), str(start), str(n)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(5)
    ]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err  # never a raw sqlite3/psycopg2 traceback
        outcomes.append(out.strip())
    assert all(o == "ok" or o.startswith("store-error") for o in outcomes), outcomes
    with MemoryStore.open(target, embedder="hash:64", index_dir=tmp_path / "check") as store:
        assert store.stats()["live"] == sum(o == "ok" for o in outcomes) >= 1


@contextmanager
def read_only(folder: Path):
    """Make ``folder`` read-only for this process: a read-only bind mount when running as root
    (permission bits do not stop root), else permission bits."""
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot bind-mount as root here: {mounted.stderr.strip()}")
        remounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True, text=True)
        try:
            if remounted.returncode != 0:
                pytest.skip(f"cannot remount read-only here: {remounted.stderr.strip()}")
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        mode = folder.stat().st_mode
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield
        finally:
            folder.chmod(mode)


@pytest.fixture
def read_only_store(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "memory.sqlite"
    with MemoryStore.open(path, embedder="hash:64") as store:
        ids = fill(store, 20)
    with read_only(folder):
        yield path, ids


def test_read_only_store_reads_and_refuses_writes_clearly(read_only_store, tmp_path):
    path, ids = read_only_store
    with MemoryStore.open(path, create=False) as store:
        assert store.read_only and store.stats()["live"] == 20
        assert store.search("lesson 3: pivot from host-3 to account user3 in table 3", k=1)[0].pamphlet.id == ids[3]
        with pytest.raises(ReadOnlyStore, match="read-only.*reads work"):
            store.add({"text": "never written"})
        with pytest.raises(ReadOnlyStore):
            store.update(ids[0], text="never written")
        with pytest.raises(MemoryStoreError, match="(?i)cannot write the export to .*read-only"):
            store.export_jsonl(path.parent / "out.jsonl")
        assert store.export_jsonl(tmp_path / "elsewhere.jsonl") == 20
    result = atlas_process("memory", "list", "--store", str(path))
    assert result.returncode == 0 and "lesson 0" in result.stdout and "Traceback" not in result.stderr
    result = atlas_process("memory", "add", "x", "--store", str(path))
    assert result.returncode == 2 and "read-only" in result.stderr and "Traceback" not in result.stderr


def test_read_only_index_that_must_be_rebuilt_is_kept_in_memory(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "memory.sqlite"
    with MemoryStore.open(path, embedder="hash:64") as store:
        fill(store, 5)
    store.index_path.unlink()
    with read_only(folder), MemoryStore.open(path, create=False) as store:
        assert any("kept in memory only" in n for n in store.notices) and len(store._index) == 5


def test_atlas_home_in_a_read_only_place_is_a_clear_error(tmp_path):
    result = atlas_process("memory", "add", "x", "--store", "/proc/atlas-cannot-be-here/memory.sqlite")
    assert result.returncode == 2 and "cannot create the folder" in result.stderr and "Traceback" not in result.stderr


def test_a_file_of_random_bytes_is_not_a_store(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(np.random.default_rng(0).bytes(8192))
    before = path.read_bytes()
    with pytest.raises(MemoryStoreError, match="is not a memory store .*file is not a database"):
        MemoryStore.open(path, embedder="hash:64")
    for command in (["list"], ["add", "x"]):
        result = atlas_process("memory", *command, "--store", str(path))
        assert result.returncode == 2 and "is not a memory store" in result.stderr and "Traceback" not in result.stderr
    assert path.read_bytes() == before


def test_read_only_commands_never_create_a_schema(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.touch()
    for command in ("stats", "list"):
        result = atlas_process("memory", command, "--store", str(path))
        assert result.returncode == 2 and "holds no memory store yet" in result.stderr
    assert path.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite"]
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "made with another embedder"}\n')
    with MemoryStore.open(path, embedder="hash:32") as store:  # not refused: no default embedder was written
        assert store.import_jsonl(source).imported == 1 and store.embedder.name == "hash-32"


def test_read_only_open_of_an_empty_server_database_creates_nothing(postgres_url, tmp_path):
    from sqlalchemy import create_engine, inspect

    with pytest.raises(MemoryStoreError, match="holds no memory store yet"):
        MemoryStore.open(postgres_url, create=False, index_dir=tmp_path)
    engine = create_engine(postgres_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def _rewrite_index(store_path, change):
    """Load the saved index, change its vectors with ``change``, save it back consistently (checksums
    recomputed), as a user or another program could."""
    index_path = Path(str(store_path) + ".index")
    index, meta, arrays = VectorIndex.load(index_path)
    ids, vectors = index.live_vectors()
    rebuilt = VectorIndex(index.dim, index.kind)
    rebuilt.upsert(ids, change(ids, vectors.copy()))
    rebuilt.save(index_path, meta, {k: v.copy() for k, v in arrays.items()})


def test_sign_flipped_vectors_in_the_index_are_detected_and_rebuilt(tmp_path):
    path = tmp_path / "m.sqlite"
    with MemoryStore.open(path, embedder="hash:64") as store:
        ids = fill(store)

    def flip(ids, vectors):
        vectors[:5] *= -1
        return vectors

    _rewrite_index(path, flip)
    with MemoryStore.open(path) as store:
        assert any("disagree with SQL" in n and "5 of 50 sampled vectors" in n for n in store.notices)
        for n, pamphlet_id in enumerate(ids):
            text = f"lesson {n}: pivot from host-{n} to account user{n} in table {n % 7}"
            assert store.search(text, k=1)[0].pamphlet.id == pamphlet_id


def test_another_stores_index_with_the_same_ids_is_not_trusted(tmp_path):
    mine, theirs = tmp_path / "mine.sqlite", tmp_path / "theirs.sqlite"
    with MemoryStore.open(mine, embedder="hash:64") as store:
        ids = fill(store)
    with MemoryStore.open(theirs, embedder="hash:64") as other:
        other.add_many([{"text": f"unrelated words number {i} about printers"} for i in range(50)])
    Path(str(mine) + ".index").write_bytes(Path(str(theirs) + ".index").read_bytes())
    with MemoryStore.open(mine) as store:
        assert any("belongs to another store" in n for n in store.notices)
        assert all(store.search(f"lesson {n}: pivot from host-{n} to account user{n} in table {n % 7}", k=1)[0].pamphlet.id == ids[n] for n in range(50))


def test_a_copied_store_diverging_keeps_ids_and_versions_but_not_its_index(tmp_path):
    """Same creation time, same ids and versions, other texts: only the content check can tell."""
    first = tmp_path / "a.sqlite"
    with MemoryStore.open(first, embedder="hash:64") as store:
        store.add({"text": "the common first lesson"})
    second = tmp_path / "b.sqlite"
    second.write_bytes(first.read_bytes())
    for path, words in ((first, "kerberos tickets"), (second, "printer spooler")):
        with MemoryStore.open(path) as store:
            fill(store, 10)
            store.update(2, text=f"about {words}")
    Path(str(first) + ".index").write_bytes(Path(str(second) + ".index").read_bytes())
    with MemoryStore.open(first) as store:
        assert any("disagree with SQL" in n for n in store.notices)
        assert store.search("about kerberos tickets", k=1)[0].pamphlet.id == 2


SAVER = """
import sys, time
import memory.index as mi
from memory.store import MemoryStore
real = mi._write_part
def slow(fd, part):
    real(fd, part[: len(part) // 2])
    print("saving", flush=True)
    time.sleep(60)
mi._write_part = slow
store = MemoryStore.open(sys.argv[1], embedder="hash:64")
store.add_many([{"text": f"pamphlet {i}"} for i in range(3000)])
store.save_index()
"""


def test_no_partial_index_file_is_left_after_a_kill_during_the_save(tmp_path):
    path = tmp_path / "m.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saving"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
    stale = tmp_path / "m.sqlite.index.tmp-999999999"  # as left where unnamed files are not supported
    stale.write_bytes(b"partial")
    with MemoryStore.open(path) as store:
        assert not stale.exists() and any("partial index file" in n for n in store.notices)
        assert store.stats()["live"] == 3000 and len(store._index) == 3000


def test_update_returns_the_version_it_wrote(store_target, tmp_path):
    mine = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "i1")
    other = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "i2")
    pid = mine.add({"text": "first words"}).id
    real_write = mine._write

    def write_then_let_another_writer_in():
        from contextlib import contextmanager

        @contextmanager
        def wrapped():
            with real_write() as conn:
                yield conn
            other.update(pid, text="another writer, right after our commit")

        return wrapped()

    mine._write = write_then_let_another_writer_in
    updated = mine.update(pid, text="our words")
    assert (updated.version, updated.text) == (2, "our words")
    assert mine.get(pid).version == 3  # the other writer's change is there, and was not handed back as ours
    mine.close()
    other.close()


def test_invalid_utf8_in_an_import_file_names_file_and_line(tmp_path):
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9 in latin-1"}\n{"text": "also fine"}\n')
    with MemoryStore.open(tmp_path / "m.sqlite", embedder="hash:64") as store:
        with pytest.raises(ImportValidationError, match=r"(?s)mixed.jsonl: 1 bad line.*line 2: not valid UTF-8 \(byte 0xe9 at column 14\)"):
            store.import_jsonl(source)
    store_path = tmp_path / "cli.sqlite"
    atlas_process("memory", "add", "seed", "--embedder", "hash:64", "--store", str(store_path))
    result = atlas_process("memory", "import", str(source), "--store", str(store_path))
    assert result.returncode == 2 and "mixed.jsonl" in result.stderr and "line 2: not valid UTF-8" in result.stderr
    assert "Traceback" not in result.stderr
    result = atlas_process("memory", "import", str(source), "--skip-invalid", "--json", "--store", str(store_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["imported"] == 2 and [line for line, _ in summary["skipped_lines"]] == [2]


def test_search_survives_a_server_dropping_its_connection(postgres_url, tmp_path):
    from sqlalchemy import create_engine, text

    with MemoryStore.open(postgres_url, embedder="hash:64", index_dir=tmp_path) as store:
        pid = store.add({"text": "hunt for encoded PowerShell"}).id
        assert store.search("encoded PowerShell", k=1)[0].pamphlet.id == pid
        backend = store._hits._conn.driver_connection.get_backend_pid()
        killer = create_engine(postgres_url)
        with killer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        killer.dispose()
        assert store.search("encoded PowerShell", k=1)[0].pamphlet.id == pid  # reconnected once, transparently
