"""Property-based fuzzing of the memory import (hypothesis).

Import files are generated line by line from good pamphlets, exports, broken JSON, non-objects,
invalid fields, invalid UTF-8, random bytes and blank lines. Invariants: a bad file raises an
ImportValidationError naming exactly the bad lines and changes nothing; --skip-invalid imports
exactly the good, new lines; never any other exception; SQL and the index always agree. The slow
variant kills the importing process at a random moment and checks that only whole batches landed.

Examples per test: ATLAS_FUZZ_EXAMPLES (default 12; the kill test: ATLAS_FUZZ_KILL_EXAMPLES,
default 4). A deeper, nightly-style run:
    ATLAS_FUZZ_EXAMPLES=2000 ATLAS_FUZZ_KILL_EXAMPLES=40 pytest tests/test_memory_fuzz.py -m "slow or not slow"
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select

from memory import tables as t
from memory.errors import ImportValidationError
from memory.schema import PamphletIn
from memory.store import MemoryStore

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("ATLAS_FUZZ_EXAMPLES", "12"))
KILL_EXAMPLES = int(os.environ.get("ATLAS_FUZZ_KILL_EXAMPLES", "4"))
DEEP = "ATLAS_FUZZ_EXAMPLES" in os.environ  # a deep run explores new examples; the default suite replays the same ones
FUZZ = settings(deadline=None, derandomize=not DEEP, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

words = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40).filter(lambda s: s.strip())
tag = st.text(alphabet=st.characters(codec="utf-8", exclude_characters=",\x00"), min_size=1, max_size=12).filter(lambda s: s.strip())
good_pamphlet = st.fixed_dictionaries(
    {"text": words},
    optional={
        "tags": st.lists(tag, max_size=3),
        "audience": st.sampled_from(["student", "teacher"]),
        "cue": st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
        "plan": st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    },
)
bad_fields = st.one_of(
    st.fixed_dictionaries({"text": st.sampled_from(["", "   ", "\t\n"])}),
    st.fixed_dictionaries({"text": words, "audience": st.text(max_size=8).filter(lambda a: a not in ("student", "teacher"))}),
    st.fixed_dictionaries({"text": words, "tags": st.just(["a,b"])}),
    st.fixed_dictionaries({"text": words, "unknown_field": st.integers()}),
    st.fixed_dictionaries({"text": st.integers() | st.none() | st.lists(st.integers(), max_size=2)}),
    st.fixed_dictionaries({"text": words.map(lambda w: w + "\x00")}),
)
# (raw line bytes, is it good?) for one line of the file
line = st.one_of(
    good_pamphlet.map(lambda d: (json.dumps(d).encode(), True)),
    good_pamphlet.map(lambda d: (json.dumps(d, ensure_ascii=False).encode("utf-8"), True)),
    bad_fields.map(lambda d: (json.dumps(d).encode(), False)),
    st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.text(max_size=10), st.booleans()).map(lambda v: (json.dumps(v).encode(), False)),
    st.binary(min_size=1, max_size=40).filter(lambda b: b.strip() and b"\n" not in b and b"\r" not in b and not _is_json_object(b)).map(lambda b: (b, False)),
    words.map(lambda w: (b'{"text": "' + w.encode("utf-8").replace(b"\\", b"").replace(b'"', b"") + b'\xff\xfe"}', False)),
)


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def _write(path: Path, lines: list[tuple[bytes, bool]], blanks: list[int]) -> tuple[list[int], list[bytes]]:
    """Write the file (blank lines where asked); return the bad line numbers and the good lines."""
    out, bad, good, number = [], [], [], 0
    for n, (raw, ok) in enumerate(lines):
        if n in blanks:
            out.append(b"   ")
            number += 1
        out.append(raw)
        number += 1
        (good if ok else bad).append(raw) if ok else bad.append(number)
    path.write_bytes(b"\n".join(out) + b"\n")
    return bad, good


def _consistent(store: MemoryStore) -> None:
    engine = create_engine(f"sqlite:///{store.target}")
    with engine.connect() as conn:
        live = set(conn.execute(select(t.pamphlets.c.id).where(t.pamphlets.c.deleted.is_(False))).scalars())
    engine.dispose()
    assert set(store._index.ids()) == live == set(store.live_ids())


@settings(FUZZ, max_examples=EXAMPLES)
@given(lines=st.lists(line, min_size=1, max_size=12), blanks=st.lists(st.integers(0, 12), max_size=2), skip=st.booleans())
def test_import_of_any_file_is_all_or_nothing_with_named_lines(lines, blanks, skip):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        source = folder / "in.jsonl"
        bad, good = _write(source, lines, blanks)
        with MemoryStore.open(folder / "m.sqlite", embedder="hash:32") as store:
            store.add({"text": "already in the store"})
            before = store.stats()["live"]
            distinct = {PamphletIn.model_validate(json.loads(raw)).compute_hash() for raw in good}
            distinct.discard(PamphletIn(text="already in the store").compute_hash())
            if bad and not skip:
                with pytest.raises(ImportValidationError) as info:
                    store.import_jsonl(source)
                assert [n for n, _ in info.value.problems] == bad
                assert store.stats()["live"] == before
            elif not good and not bad:
                raise AssertionError("a file of only blank lines cannot be generated")
            elif not good:
                report = store.import_jsonl(source, skip_invalid=True)
                assert report.imported == 0 and [n for n, _ in report.skipped_lines] == bad
            else:
                report = store.import_jsonl(source, skip_invalid=skip)
                assert [n for n, _ in report.skipped_lines] == bad
                assert report.imported == len(distinct) and store.stats()["live"] == before + len(distinct)
            _consistent(store)
        with MemoryStore.open(folder / "m.sqlite") as reopened:
            assert reopened.notices == []  # the saved index matches SQL
            _consistent(reopened)


IMPORTER = """
import sys
from memory.store import MemoryStore
store = MemoryStore.open(sys.argv[1], embedder="hash:32")
print("open", flush=True)
store.import_jsonl(sys.argv[2], skip_invalid=True)
store.close()
"""


@pytest.mark.slow
@settings(FUZZ, max_examples=KILL_EXAMPLES)
@given(
    templates=st.lists(st.one_of(good_pamphlet.map(lambda d: (d, True)), line.filter(lambda x: not x[1])), min_size=1, max_size=10),
    size=st.integers(2500, 3500),
    delay=st.floats(0.0, 3.0),
)
def test_import_killed_at_any_moment_leaves_whole_batches(templates, size, delay):
    lines = []
    for i in range(size):  # a big file from a few generated lines; good ones made distinct
        item, ok = templates[i % len(templates)]
        lines.append((json.dumps({**item, "text": f"{item['text']} #{i}"}).encode(), True) if ok else (item, False))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        source, path = folder / "in.jsonl", folder / "m.sqlite"
        _, good = _write(source, lines, [])
        MemoryStore.open(path, embedder="hash:32").close()
        proc = subprocess.Popen([sys.executable, "-c", IMPORTER, str(path), str(source)], env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "open"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        distinct = len({PamphletIn.model_validate(json.loads(raw)).compute_hash() for raw in good})
        with MemoryStore.open(path) as store:
            live = store.stats()["live"]
            assert live == distinct or live % 1000 == 0  # whole transactions of 1,000 only
            assert all(len(store.history(i)) == 1 for i in store.live_ids()[-3:])
            _consistent(store)
        assert [p.name for p in folder.iterdir() if ".tmp" in p.name] == []
