"""Property-based fuzzing of the investigation benchmark's edges: the SQL guard and the question-file loaders.

SQL guard (statements built around write keywords, comments, quoting, stacked statements and
function calls): a refused query changes nothing, an accepted one is a single read-only statement,
and every query returns within its time limit plus a small margin.
Question files (ExCyTIn-Bench's and ours; random bytes, encodings, BOMs, huge fields, broken
records): a clear error naming the file (and line), or a parse in which every record is either a
question with its fields unaltered or a skipped record with its line: never a traceback, never
a silent drop. Example counts: see tests/fuzzing.py (ATLAS_FUZZ=nightly digs deeper).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.investigation.database import QueryFailed, QueryRefused, QueryTimeout, SQLiteDatabase
from benchmarks.investigation.errors import QuestionFileError
from benchmarks.investigation.excytin import load_excytin
from benchmarks.investigation.question_files import read_question_set
from benchmarks.investigation.question_formats import load_question_file
from benchmarks.investigation.sql_guard import check_sql
from benchmarks.investigation.sqlite_database import KILL_GRACE_S
from tests.fuzzing import fuzz_settings

LIMIT_S = 0.25
MARGIN_S = KILL_GRACE_S + 0.75  # the kill, a fresh worker, a loaded machine
ROWS = 6

# ---------------------------------------------------------------------------------------------
# SQL guard
# ---------------------------------------------------------------------------------------------

KEYWORDS = ["SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "DROP", "CREATE", "ALTER", "ATTACH", "DETACH", "REPLACE",
            "VACUUM", "REINDEX", "PRAGMA", "EXPLAIN", "VALUES", "INTO", "FROM", "WHERE", "SET", "TABLE", "TEMP",
            "TRIGGER", "VIEW", "INDEX", "DATABASE", "BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ANALYZE", "UNION",
            "RECURSIVE", "AS", "ON", "CONFLICT", "DO", "NOTHING", "RETURNING"]  # fmt: skip
FUNCTIONS = ["load_extension('x')", "fts3_tokenizer('simple')", "fts5(NULL)", "sqlite_log(1, 'x')", "printf('%.*c', 1000000000, 'x')",
             "zeroblob(100000000)", "hex(zeroblob(1000))", "randomblob(10)", "length('abc')", "upper(UserPrincipalName)",
             "count(*)", "json_extract('{}', '$.a')", "rtreenode(2, x'00')", "optimize(1)", "sqlite_version()",
             "replace(hex(zeroblob(2000000)), '0', 'ab')"]  # fmt: skip
FRAGMENTS = ["SigninLogs", "sqlite_master", "main", "temp", "query_only", "writable_schema", "journal_mode", "table_info(SigninLogs)",
             "*", ",", "(", ")", "=", "1", "0", "'x'", "';'", '"SigninLogs"', "[SigninLogs]", "`SigninLogs`", ";", "; ", "--",
             "-- c\n", "/*", "*/", "/* ; DELETE */", "'", '"', "`", "[", "]", "\n", "x'00'", "$", ":p", "?", "#",
             "IPAddress", "UserPrincipalName", "LIMIT 3", "r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r)"]  # fmt: skip
TOKENS = st.sampled_from(KEYWORDS) | st.sampled_from(FUNCTIONS) | st.sampled_from(FRAGMENTS) | st.text(max_size=6)
STATEMENTS = st.lists(TOKENS, min_size=1, max_size=14).map(" ".join) | st.builds(
    lambda head, body: f"{head} {body}", st.sampled_from(["SELECT", "WITH", "PRAGMA", "EXPLAIN", "VALUES(1);"]),
    st.lists(TOKENS, max_size=10).map(" ".join),
)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[SQLiteDatabase, Path, Path]]:
    """A read-only database under fuzz, and a writable copy that replays accepted statements as the oracle."""
    folder = Path(tempfile.mkdtemp(prefix="atlas-fuzz-"))
    world = folder / "world" / "world.db"
    world.parent.mkdir()
    connection = sqlite3.connect(world)
    connection.executescript("CREATE TABLE SigninLogs (UserPrincipalName TEXT, IPAddress TEXT);")
    connection.executemany("INSERT INTO SigninLogs VALUES (?, ?)", [(f"u{i}@contoso.com", f"10.0.0.{i}") for i in range(ROWS)])
    connection.commit()
    connection.close()
    scratch = folder / "scratch.db"
    shutil.copy(world, scratch)
    with SQLiteDatabase(world) as database:
        yield database, world, scratch
    shutil.rmtree(folder)


def _replay_changes_nothing(scratch: Path, statement: str) -> bool:
    """Run the statement the guard let through on a writable copy: one statement, and nothing written."""
    connection = sqlite3.connect(scratch, isolation_level=None)
    try:
        schema = connection.execute("SELECT sql FROM sqlite_master").fetchall()
        deadline = time.monotonic() + 2.0
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            connection.execute(statement).fetchmany(5)
        except (sqlite3.Error, sqlite3.Warning, MemoryError, OverflowError):
            pass  # it fails here too (or ran long): what matters is what it left behind
        connection.set_progress_handler(None, 0)
        return connection.total_changes == 0 and not connection.in_transaction and connection.execute(
            "SELECT sql FROM sqlite_master").fetchall() == schema
    finally:
        connection.close()


@fuzz_settings(100)
@given(sql=STATEMENTS)
def test_sql_guard_properties(sandbox: tuple[SQLiteDatabase, Path, Path], sql: str) -> None:
    database, world, scratch = sandbox
    before = _digest(world.parent)
    start = time.monotonic()
    try:
        database.execute(sql, time_limit_s=LIMIT_S)
        outcome = "ok"
    except QueryRefused:
        outcome = "refused"
    except (QueryTimeout, QueryFailed):
        outcome = "ran"
    assert time.monotonic() - start < LIMIT_S + MARGIN_S, sql
    assert _digest(world.parent) == before, sql  # nothing written, no journal left
    if outcome == "ok":
        statement = check_sql(sql, "sqlite")
        assert sqlite3.complete_statement(statement + "\n;"), sql
        assert _replay_changes_nothing(scratch, statement), sql
    assert database.execute("SELECT count(*) FROM SigninLogs").rows == ((ROWS,),)  # no state left in the session
    assert database.execute("PRAGMA query_only").rows == ((1,),)


# ---------------------------------------------------------------------------------------------
# Question files
# ---------------------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
NONBLANK = TEXT.filter(lambda t: t.strip() != "")
HUGE = st.integers(100_000, 200_000).map(lambda n: "x" * n)


def _excytin_good() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"context": TEXT | st.none(), "question": NONBLANK, "answer": NONBLANK | HUGE},
        optional={"solution": st.lists(TEXT, max_size=3), "shortest_alert_path": st.lists(st.integers(0, 99), max_size=5),
                  "start_alert": st.integers(0, 99)},  # fmt: skip
    )


EXCYTIN_BAD = st.sampled_from([
    '{"context": "c", "question": "", "answer": "a"}', '{"context": "c", "answer": "a"}', '{"question": "q", "answer": ["a"]}',
    '{"question": "q", "answer": "a", "shortest_alert_path": "x"}', '"just text"', "42", "null",
    '{"question": "q", "answer": "a", "answer": "b"}', '{"question": "q\\ud800", "answer": "a"}', '{"question": "q", "answer": "   "}',
])  # fmt: skip


def _write(path: Path, lines: list[str], as_list: bool, bom: bool, crlf: bool) -> None:
    newline = "\r\n" if crlf else "\n"
    text = ("[" + newline + ("," + newline).join(lines) + newline + "]" + newline) if as_list else newline.join(lines) + newline
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8"))


def _check_error(error: QuestionFileError, path: Path) -> None:
    assert str(path) in str(error) and str(error).strip(), error


@fuzz_settings(40)
@given(records=st.lists(st.one_of(_excytin_good(), EXCYTIN_BAD), min_size=0, max_size=8),
       as_list=st.booleans(), bom=st.booleans(), crlf=st.booleans())  # fmt: skip
def test_excytin_files_parse_or_fail_clearly_and_drop_nothing(records: list, as_list: bool, bom: bool, crlf: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "incident_7_qa.json"
        lines = [json.dumps(r) if isinstance(r, dict) else r for r in records]
        _write(path, lines, as_list, bom, crlf)
        good = [r for r in records if isinstance(r, dict)]
        try:
            loaded = load_excytin(path)
        except QuestionFileError as error:
            _check_error(error, path)
            assert not good, error  # only an empty file, or one without a single usable record, is an error
            return
        first_line = 2 if as_list else 1
        assert len(loaded.questions) + len(loaded.skipped) == len(records)  # nothing dropped silently
        assert [q.answer for q in loaded.questions] == [r["answer"] for r in good]  # nothing altered
        assert [q.question for q in loaded.questions] == [r["question"] for r in good]
        bad_lines = [first_line + i for i, r in enumerate(records) if not isinstance(r, dict)]
        assert [s.line for s in loaded.skipped] == bad_lines


def _our_record(index: int) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"id": st.just(f"q{index}"), "incident": st.integers(1, 9), "difficulty": st.integers(0, 4),
                                  "context": TEXT, "question": NONBLANK, "answer": NONBLANK | HUGE})  # fmt: skip


OURS_BAD = st.sampled_from([
    '{"id": "dup", "incident": 1, "difficulty": -1, "context": "c", "question": "q", "answer": "a"}', "not json", "[1, 2]",
    '{"id": "x", "incident": 1, "difficulty": 0, "context": "c", "question": "q", "answer": "a", "unknown": 1}',
    '{"id": "q\\udc00", "incident": 1, "difficulty": 0, "context": "c", "question": "q", "answer": "a"}',
])  # fmt: skip


@fuzz_settings(40)
@given(data=st.data(), bom=st.booleans(), crlf=st.booleans())
def test_our_jsonl_files_parse_or_fail_clearly_and_drop_nothing(data: st.DataObject, bom: bool, crlf: bool) -> None:
    count = data.draw(st.integers(0, 8))
    records = [data.draw(st.one_of(_our_record(i), OURS_BAD)) for i in range(count)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "questions.jsonl"
        _write(path, [json.dumps(r) if isinstance(r, dict) else r for r in records], False, bom, crlf)
        good = [r for r in records if isinstance(r, dict)]
        try:
            loaded = read_question_set(path)
        except QuestionFileError as error:
            _check_error(error, path)
            assert not good, error
            return
        assert len(loaded.questions) + len(loaded.skipped) == len(records)
        assert [q.answer for q in loaded.questions] == [r["answer"] for r in good]
        assert [s.line for s in loaded.skipped] == [i + 1 for i, r in enumerate(records) if not isinstance(r, dict)]


@fuzz_settings(100)
@given(raw=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: t.encode("utf-16")) | st.sampled_from(
    [b"[", b"[{", b"[[[[[[[[" * 2000, b'[{"question": 1' + b"0" * 5000 + b"}]", b"\xef\xbb\xbf[]", b"\xff\xfe[\x00]\x00",
     b'[{"question": "q", "answer": "a"}] trailing', b"{\n}\n", b'{"question":\n "q", "answer": "a"}\n']))  # fmt: skip
def test_random_bytes_give_a_clear_error_or_a_parse(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.json"
        path.write_bytes(raw)
        for load in (load_question_file, load_excytin, read_question_set):
            try:
                loaded = load(path)
            except QuestionFileError as error:
                _check_error(error, path)
            else:
                assert loaded.questions and all(s.line >= 1 and s.reason for s in loaded.skipped)
