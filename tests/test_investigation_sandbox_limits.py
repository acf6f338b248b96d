"""Hard limits: a statement returns within its time limit plus a margin whatever it calls (SQLite and servers),
pointer-returning SQLite functions are refused, and a killed or crashed SQLite worker process is replaced."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.investigation.database import QueryFailed, QueryRefused, QueryTimeout, SQLAlchemyDatabase, SQLiteDatabase
from benchmarks.investigation.server_database import CUTOFF_GRACE_S
from benchmarks.investigation.sql_guard import SQLITE_DENIED_FUNCTIONS, check_sql
from benchmarks.investigation.sqlite_database import KILL_GRACE_S
from tests.conftest import POSTGRES_URL, require_service

SLOW_PRINTF = "length(printf('%.*c', 1000000000, 'x'))"  # one function call: the progress handler never runs
LIMIT_S = 1.0
MARGIN_S = KILL_GRACE_S + 0.5  # the kill, and a loaded machine


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteDatabase]:
    path = tmp_path / "world.db"
    connection = sqlite3.connect(path)
    connection.executescript("CREATE TABLE SigninLogs (UserPrincipalName TEXT, IPAddress TEXT);"
                             "INSERT INTO SigninLogs VALUES ('a@contoso.com', '10.0.0.1'), ('b@contoso.com', '10.0.0.2');")  # fmt: skip
    connection.close()
    with SQLiteDatabase(path) as opened:
        yield opened


@pytest.mark.parametrize("columns", [1, 6])
def test_straight_line_slow_functions_stop_at_the_limit(db: SQLiteDatabase, columns: int) -> None:
    sql = "SELECT " + ", ".join([SLOW_PRINTF] * columns)
    start = time.monotonic()
    with pytest.raises(QueryTimeout, match=f"ran longer than {LIMIT_S} s"):
        db.execute(sql, time_limit_s=LIMIT_S)  # before: 5 s per column at a 5 s limit, then "query ok"
    assert time.monotonic() - start < LIMIT_S + MARGIN_S
    assert db.execute("SELECT count(*) FROM SigninLogs").rows == ((2,),)  # a fresh worker answers


@pytest.mark.parametrize("sql", ["SELECT hex(fts3_tokenizer('simple'))", "SELECT fts3_tokenizer('simple')",
                                 "SELECT FTS3_TOKENIZER ('porter')", "SELECT fts5(NULL)", "SELECT sqlite_log(1, 'x')",
                                 "SELECT rtreenode(2, x'00')", "SELECT load_extension('evil')"])  # fmt: skip
def test_pointer_and_engine_functions_are_refused(db: SQLiteDatabase, sql: str) -> None:
    with pytest.raises(QueryRefused, match=r"\(\) is not allowed: it "):
        db.execute(sql)


@pytest.mark.parametrize("name", sorted(SQLITE_DENIED_FUNCTIONS))
def test_the_authorizer_refuses_them_when_the_lexical_check_is_bypassed(db: SQLiteDatabase, name: str) -> None:
    """A quoted function name passes the lexical check; the worker's authorizer still refuses it."""
    arguments = ", ".join(["'simple'"] * max(1, _arity(name)))
    sql = f'SELECT "{name}"({arguments})'
    assert check_sql(sql, "sqlite") == sql
    with pytest.raises(QueryRefused, match=f"{name}\\(\\) is not allowed: it {SQLITE_DENIED_FUNCTIONS[name][:20]}"):
        db.execute(sql)


def _arity(name: str) -> int:
    """The fewest arguments the function takes (SQLite checks the count before it asks the authorizer)."""
    plain = sqlite3.connect(":memory:")
    try:
        return plain.execute("SELECT min(narg) FROM pragma_function_list WHERE name = ?", (name,)).fetchone()[0]
    finally:
        plain.close()


def test_a_worker_killed_between_queries_is_replaced(db: SQLiteDatabase) -> None:
    worker = db._worker
    assert worker is not None
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait()
    assert db.execute("SELECT count(*) FROM SigninLogs").rows == ((2,),)


def test_a_worker_killed_mid_query_is_an_error_then_replaced(db: SQLiteDatabase) -> None:
    worker = db._worker
    assert worker is not None
    threading.Timer(0.3, os.kill, (worker.process.pid, signal.SIGKILL)).start()
    with pytest.raises(QueryFailed, match="stopped the SQLite worker process"):
        db.execute(f"SELECT {SLOW_PRINTF}", time_limit_s=5.0)
    assert db.execute("SELECT count(*) FROM SigninLogs").rows == ((2,),)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Python's own Ctrl-C handler, whatever the test process inherited: a job started in the background by a
    non-interactive shell (nohup ... &) starts with SIGINT ignored, and Python then keeps it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_while_waiting_stops_the_statement(db: SQLiteDatabase) -> None:
    threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        db.execute(f"SELECT {SLOW_PRINTF}", time_limit_s=5.0)
    assert time.monotonic() - start < 2.0
    assert db.execute("SELECT count(*) FROM SigninLogs").rows == ((2,),)


def test_close_ends_the_worker(db: SQLiteDatabase) -> None:
    worker = db._worker
    assert worker is not None
    db.close()
    assert worker.process.poll() is not None
    with pytest.raises(Exception, match="is closed"):
        db.execute("SELECT 1")


@pytest.fixture(params=["mariadb", "postgresql"])
def server_url(request: pytest.FixtureRequest) -> str:
    if request.param == "mariadb":
        return request.getfixturevalue("mariadb_url")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


def test_a_server_statement_that_outlives_its_limit_is_cut_off(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some server functions ignore the statement limit (MariaDB's REGEXP_REPLACE over a long string ran
    120 s at a 1 s limit, until the driver's read timeout): with the server's limit switched off, a
    sleep stands in for them, and the client still returns at the limit plus the cut-off margin."""
    monkeypatch.setattr(SQLAlchemyDatabase, "_arm", lambda self, connection, time_limit_s: None)
    sleep = "SELECT SLEEP(5)" if server_url.startswith("mysql") else "SELECT pg_sleep(5)"
    with SQLAlchemyDatabase(server_url) as db:
        start = time.monotonic()
        with pytest.raises(QueryTimeout, match="was cut off"):
            db.execute(sleep, time_limit_s=LIMIT_S)
        assert time.monotonic() - start < LIMIT_S + CUTOFF_GRACE_S + 0.5
        assert db.execute("SELECT 1").rows == ((1,),)  # the pool hands out a working connection
