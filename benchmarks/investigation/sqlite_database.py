"""The guarded SQLite engine: a world file opened read-only, each statement under a deadline and memory limits.

Guards behind the lexical check (`sql_guard`): `mode=ro`, `PRAGMA query_only`, and an authorizer
that allows only reads; a progress handler stops a statement past its deadline.

SQLite's progress handler runs only at loop jumps, so it cannot stop one function call or a
run of straight-line code (a thousand constant `hex(zeroblob(5e6))` columns). As SQLite's
"Defense Against the Dark Arts" advises, each connection therefore caps values at 10 MB and
statements at 100,000 bytes, and SQLite's heap is capped at 512 MB for the whole process
(`PRAGMA hard_heap_limit`, which only ever lowers an existing limit); the progress handler
also stops a statement during which the process's memory grows by more than 512 MB (rows
piling up in Python; on Linux, where /proc tells the resident size).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks.investigation.database_protocol import (
    OUT_OF_MEMORY,
    QueryFailed,
    QueryRefused,
    QueryResult,
    QueryTimeout,
    check_limits,
    collect_rows,
)
from benchmarks.investigation.errors import DatabaseError
from benchmarks.investigation.sql_guard import MAX_SQL_CHARS, READ_ONLY_HINT, check_statement, pragma_refusal

# SQLite VM instructions between deadline/memory checks (at loop jumps): about a microsecond of
# ordinary work, and only a few rows when each row calls a 10 MB function such as hex(zeroblob(...)).
_PROGRESS_EVERY = 100
_MEMORY_CHECK_EVERY_S = 0.005
_MEMORY_BUDGET_BYTES = 512_000_000  # growth of this process's resident memory during one SQLite statement
_SQLITE_HEAP_LIMIT_BYTES = 512_000_000  # all SQLite allocations in the process (hard_heap_limit)
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_SQLITE_MAX_VALUE_BYTES = 10_000_000  # SQLite strings/blobs: one function call cannot build more

_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name
    for name in (
        "CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE", "CREATE_TEMP_TRIGGER",
        "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "DELETE", "DROP_INDEX", "DROP_TABLE",
        "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER", "DROP_TEMP_VIEW", "DROP_TRIGGER",
        "DROP_VIEW", "INSERT", "TRANSACTION", "UPDATE", "ATTACH", "DETACH", "ALTER_TABLE", "REINDEX",
        "ANALYZE", "CREATE_VTABLE", "DROP_VTABLE", "SAVEPOINT",
    )
}  # fmt: skip
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
_DENIED_FUNCTIONS = frozenset({"load_extension"})


class GuardedConnection(sqlite3.Connection):
    """A read-only sqlite3 connection whose authorizer allows only reads and whose queries have a deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.isolation_level = None  # never an implicit BEGIN
        self.execute("PRAGMA query_only=ON").close()  # before the authorizer, which forbids setting it
        self.execute(f"PRAGMA hard_heap_limit={_SQLITE_HEAP_LIMIT_BYTES}").close()  # process-wide; only lowers
        self.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _SQLITE_MAX_VALUE_BYTES)
        self.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_CHARS)
        self.deadline = math.inf
        self.timed_out = False
        self.out_of_memory = False
        self._memory_ceiling: int | None = None
        self._next_memory_check = math.inf
        self.denied: str | None = None
        self.user_interrupt = False
        self.set_authorizer(self._authorize)
        self.set_progress_handler(self._progress, _PROGRESS_EVERY)

    def arm(self, time_limit_s: float) -> None:
        now = time.monotonic()
        self.deadline = now + time_limit_s
        self.timed_out = False
        self.out_of_memory = False
        resident = _resident_bytes()
        self._memory_ceiling = None if resident is None else resident + _MEMORY_BUDGET_BYTES
        self._next_memory_check = now + _MEMORY_CHECK_EVERY_S
        self.denied = None

    def disarm(self) -> None:
        self.deadline = math.inf
        self._memory_ceiling = None
        self._next_memory_check = math.inf

    def _progress(self) -> int:
        try:
            return self._check_limits()
        except KeyboardInterrupt:  # Ctrl-C landed inside SQLite's callback: stop, and re-raise after
            self.user_interrupt = True
            return 1

    def _check_limits(self) -> int:
        now = time.monotonic()
        if now > self.deadline:
            self.timed_out = True
            return 1  # interrupts the statement
        if now >= self._next_memory_check and self._memory_ceiling is not None:
            self._next_memory_check = now + _MEMORY_CHECK_EVERY_S
            resident = _resident_bytes()
            if resident is not None and resident > self._memory_ceiling:
                self.out_of_memory = True
                return 1
        return 0

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trig: str | None) -> int:
        try:
            return self._decide(action, arg1, arg2)
        except KeyboardInterrupt:
            self.user_interrupt = True
            return sqlite3.SQLITE_DENY

    def _decide(self, action: int, arg1: str | None, arg2: str | None) -> int:
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() not in _DENIED_FUNCTIONS:
                return sqlite3.SQLITE_OK
            reason = f"{arg2}() is not allowed"
        elif action == sqlite3.SQLITE_PRAGMA:
            refusal = pragma_refusal(arg1 or "", arg2)
            if refusal is None:
                return sqlite3.SQLITE_OK
            reason = refusal
        elif action == sqlite3.SQLITE_UPDATE and arg1 in ("sqlite_master", "sqlite_schema"):
            # SQLite asks for this when a table-valued pragma function (pragma_table_info(...)) is used.
            reason = f"pragma functions such as pragma_table_info() are not available; use PRAGMA table_info(Table)"
        else:
            reason = f"{_ACTION_NAMES.get(action, f'action {action}')} is not allowed: {READ_ONLY_HINT}"
        if self.denied is None:
            self.denied = reason
        return sqlite3.SQLITE_DENY


def _resident_bytes() -> int | None:
    """This process's resident memory, from /proc (Linux); None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def connect_sqlite(path: Path) -> GuardedConnection:
    uri = f"file:{quote(path.as_posix())}?mode=ro"  # '?', '#' or '%' in a path would end it early
    connection = sqlite3.connect(uri, uri=True, check_same_thread=False, factory=GuardedConnection)
    assert isinstance(connection, GuardedConnection)
    return connection


def sqlite_error(error: Exception, connection: GuardedConnection, time_limit_s: float) -> Exception:
    """The QueryRefused/QueryTimeout/QueryFailed that a sqlite3 error means (Ctrl-C stays Ctrl-C)."""
    if connection.user_interrupt:
        connection.user_interrupt = False
        raise KeyboardInterrupt
    message = str(error)
    if connection.timed_out:
        return QueryTimeout(f"the statement ran longer than {time_limit_s} s and was stopped")
    if connection.out_of_memory:
        return QueryFailed(OUT_OF_MEMORY)
    if connection.denied is not None or "not authorized" in message:
        return QueryRefused(connection.denied or READ_ONLY_HINT)
    if "readonly database" in message or "one statement at a time" in message:
        return QueryRefused(f"{message}; {READ_ONLY_HINT}")
    if message in ("string or blob too big", "query string is too large", "statement too long"):  # setlimit()
        return QueryFailed(
            f"{message}: values are limited to {_SQLITE_MAX_VALUE_BYTES:,} bytes and statements to "
            f"{MAX_SQL_CHARS:,}; select less (substr(), length())"
        )
    return QueryFailed(message)


def resolve_sqlite_path(target: str | Path) -> Path:
    """The SQLite file a path names (a folder means its world.db), or a DatabaseError saying what to do."""
    path = Path(target).expanduser()
    if path.is_dir():
        path = path / "world.db"
        if not path.is_file():
            raise DatabaseError(
                f"{path.parent} is a folder without a world.db; build the world there or pass the database file"
            )
    elif not path.exists():
        raise DatabaseError(
            f"no database file at {path}; check the path, build the world first, or pass a database URL"
        )
    elif not path.is_file():
        raise DatabaseError(f"{path} is not a regular file; pass a SQLite file, a world folder or a database URL")
    return path.resolve()


class SQLiteDatabase:
    """A SQLite file opened read-only (mode=ro, query_only, an authorizer that allows only reads)."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = resolve_sqlite_path(path)
        self._lock = threading.Lock()
        self._connection = connect_sqlite(self.path)
        try:
            self._connection.execute("SELECT count(*) FROM sqlite_master").close()
        except sqlite3.Error as error:
            self._connection.close()
            message = f"cannot read {self.path} as a SQLite database ({error}); pass a world.db file"
            raise DatabaseError(message) from error

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        time_limit_s: float = 5.0,
        row_limit: int = 15,
        count_limit: int = 10_000,
    ) -> QueryResult:
        check_limits(time_limit_s, row_limit, count_limit)
        statement = check_statement(sql, self.dialect)[0]
        start = time.monotonic()
        with self._lock:
            connection = self._connection
            connection.arm(time_limit_s)
            cursor = connection.cursor()
            try:
                if params:
                    cursor.execute(statement, dict(params))
                else:
                    cursor.execute(statement)
                columns = tuple(d[0] for d in cursor.description or ())
                rows, total, more = collect_rows(cursor.fetchmany, row_limit, count_limit) if columns else ([], 0, False)
            except (sqlite3.Error, sqlite3.Warning) as error:
                raise sqlite_error(error, connection, time_limit_s) from error
            except MemoryError as error:  # SQLITE_NOMEM: the heap limit stopped the statement
                raise QueryFailed(OUT_OF_MEMORY) from error
            finally:
                cursor.close()  # resets the statement: rows past the cap are never computed
                connection.disarm()
        return QueryResult(columns, tuple(rows), total, more, time.monotonic() - start)

    def table_names(self) -> list[str]:
        result = self.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
            row_limit=100_000,
            count_limit=100_000,
        )
        return [row[0] for row in result.rows]

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> SQLiteDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

