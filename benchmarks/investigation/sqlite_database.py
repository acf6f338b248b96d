"""The guarded SQLite engine: a world file opened read-only, each statement under a deadline and memory limits.

Guards behind the lexical check (`sql_guard`): `mode=ro`, `PRAGMA query_only`, and an authorizer
that allows only reads and refuses functions that reach outside the data (`SQLITE_DENIED_FUNCTIONS`);
a progress handler stops a statement past its deadline.

SQLite's progress handler runs only between VM instructions, so it cannot stop one function call
(`printf('%.*c', 1000000000, 'x')` runs for seconds) or a run of straight-line code. Statements
therefore run in a child process (`sqlite_worker`): the parent waits for the time limit plus
`KILL_GRACE_S`, then kills the child, reports a timeout, and starts a fresh child for the next
statement. Every query returns within its limit plus that margin, whatever it calls. As SQLite's
"Defense Against the Dark Arts" advises, the connection also caps values at 10 MB and statements
at 100,000 bytes, SQLite's heap at 512 MB (`PRAGMA hard_heap_limit`), and the progress handler
stops a statement during which the child's memory grows by more than 512 MB (rows piling up; on
Linux, where /proc tells the resident size).
"""

from __future__ import annotations

import os
import pickle
import select
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from benchmarks.investigation import sqlite_worker
from benchmarks.investigation.database_protocol import (
    OUT_OF_MEMORY,
    QueryFailed,
    QueryRefused,
    QueryResult,
    QueryTimeout,
    check_limits,
)
from benchmarks.investigation.errors import DatabaseError
from benchmarks.investigation.sql_guard import (
    MAX_SQL_CHARS,
    PRAGMAS_READABLE,
    PRAGMAS_WITH_ARGUMENT,
    READ_ONLY_HINT,
    SQLITE_DENIED_FUNCTIONS,
    check_statement,
    pragma_refusal,
)

# SQLite VM instructions between deadline/memory checks (at loop jumps): about a microsecond of
# ordinary work, and only a few rows when each row calls a 10 MB function such as hex(zeroblob(...)).
_PROGRESS_EVERY = 100
_MEMORY_CHECK_EVERY_S = 0.005
_MEMORY_BUDGET_BYTES = 512_000_000  # growth of the worker's resident memory during one statement
_SQLITE_HEAP_LIMIT_BYTES = 512_000_000  # all SQLite allocations in the worker (hard_heap_limit)
_SQLITE_MAX_VALUE_BYTES = 10_000_000  # SQLite strings/blobs: one function call cannot build more
KILL_GRACE_S = 0.5  # past its time limit, a statement's worker is killed
_START_TIMEOUT_S = 60.0  # a fresh worker opens the file within this (a loaded machine is slow to start one)
_WORKER_COMMAND = (sys.executable, "-E", "-s", "-S", str(Path(sqlite_worker.__file__)))

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


def _worker_settings() -> dict[str, Any]:
    return {
        "readable_pragmas": sorted(PRAGMAS_READABLE),
        "pragmas_with_argument": sorted(PRAGMAS_WITH_ARGUMENT),
        "denied_functions": sorted(SQLITE_DENIED_FUNCTIONS),
        "heap_limit_bytes": _SQLITE_HEAP_LIMIT_BYTES,
        "max_value_bytes": _SQLITE_MAX_VALUE_BYTES,
        "max_sql_chars": MAX_SQL_CHARS,
        "progress_every": _PROGRESS_EVERY,
        "memory_check_every_s": _MEMORY_CHECK_EVERY_S,
    }


def denial_reason(action: int, arg1: str | None, arg2: str | None) -> str:
    """Why the authorizer refused (action, arg1, arg2), in words an agent can act on."""
    if action == sqlite3.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        return f"{name}() is not allowed: it {SQLITE_DENIED_FUNCTIONS.get(name, 'is not available here')}"
    if action == sqlite3.SQLITE_PRAGMA:
        return pragma_refusal(arg1 or "", arg2) or f"PRAGMA {arg1} is not allowed"
    if action == sqlite3.SQLITE_UPDATE and arg1 in ("sqlite_master", "sqlite_schema"):
        # SQLite asks for this when a table-valued pragma function (pragma_table_info(...)) is used.
        return "pragma functions such as pragma_table_info() are not available; use PRAGMA table_info(Table)"
    return f"{_ACTION_NAMES.get(action, f'action {action}')} is not allowed: {READ_ONLY_HINT}"


def _failure(kind: str, detail: Any, time_limit_s: float) -> Exception:
    """The QueryTimeout/QueryRefused/QueryFailed that a worker's ("failed", kind, detail) reply means."""
    if kind == "timeout":
        return QueryTimeout(f"the statement ran longer than {time_limit_s} s and was stopped")
    if kind == "out_of_memory":
        return QueryFailed(OUT_OF_MEMORY)
    if kind == "denied":
        return QueryRefused(denial_reason(*detail))
    message = str(detail)
    if "not authorized" in message:
        return QueryRefused(READ_ONLY_HINT)
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



def sqlite_url_path(url: str) -> Path:
    """The file a sqlite:/// URL names."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise DatabaseError(f"{url!r} is not a database URL ({error}); write sqlite:///path/to/world.db") from error
    if not parsed.database or parsed.database == ":memory:":
        raise DatabaseError(f"{parsed.render_as_string(hide_password=True)} names no file; write sqlite:///path/to/world.db")
    return Path(parsed.database)


class _Overdue(Exception):
    """The worker did not answer by the deadline."""


class _WorkerGone(Exception):
    """The worker's pipe closed: it crashed or was killed from outside."""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


class _Worker:
    """One child process serving one SQLite file; killed (and replaced by the caller) when a statement overruns."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            _WORKER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, close_fds=True
        )  # a new session: a Ctrl-C at the terminal reaches the parent, which decides
        self._finalizer = weakref.finalize(self, _stop, self.process)
        self._pending = bytearray()  # bytes read from the worker past the last reply's end
        reply = self.call(("open", str(path), _worker_settings()), time.monotonic() + _START_TIMEOUT_S)
        if reply[0] != "ready":
            self.stop()
            raise DatabaseError(f"cannot read {path} as a SQLite database ({reply[2]}); pass a world.db file")

    def call(self, message: tuple[Any, ...], deadline: float) -> tuple[Any, ...]:
        """Send one message and wait for the reply until `deadline` (monotonic seconds)."""
        assert self.process.stdin is not None
        try:
            sqlite_worker.write_message(self.process.stdin, message)  # type: ignore[arg-type]
            header = self._read(sqlite_worker.HEADER.size, deadline)
            reply = pickle.loads(self._read(sqlite_worker.HEADER.unpack(header)[0], deadline))
        except (BrokenPipeError, _WorkerGone):
            self.stop()
            raise _WorkerGone from None
        except BaseException:  # overdue, or Ctrl-C while waiting: the statement is abandoned with its worker
            self.stop()
            raise
        return reply

    def _read(self, size: int, deadline: float) -> bytes:
        """The next `size` bytes from the worker (a reply usually arrives in one read, header and all)."""
        assert self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        while len(self._pending) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([descriptor], [], [], remaining)[0]:
                raise _Overdue
            chunk = os.read(descriptor, max(size - len(self._pending), 1 << 16))
            if not chunk:
                raise _WorkerGone
            self._pending += chunk
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self._finalizer()


class SQLiteDatabase:
    """A SQLite file opened read-only in a worker process (mode=ro, query_only, an authorizer that allows only reads)."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = resolve_sqlite_path(path)
        self._lock = threading.Lock()
        self._worker: _Worker | None = _Worker(self.path)
        self._closed = False

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
        request = ("execute", statement, dict(params) if params else None, time_limit_s, row_limit, count_limit,
                   _MEMORY_BUDGET_BYTES)  # fmt: skip
        start = time.monotonic()
        with self._lock:
            worker = self._running_worker()
            try:
                reply = worker.call(request, start + time_limit_s + KILL_GRACE_S)
            except _Overdue:
                raise QueryTimeout(f"the statement ran longer than {time_limit_s} s and was stopped") from None
            except _WorkerGone:
                raise QueryFailed(
                    "the statement stopped the SQLite worker process (it crashed or was killed); "
                    "the next query starts a new one"
                ) from None
        if reply[0] == "failed":
            raise _failure(reply[1], reply[2], time_limit_s)
        _, columns, rows, total, more = reply
        return QueryResult(columns, rows, total, more, time.monotonic() - start)

    def _running_worker(self) -> _Worker:
        if self._closed:
            raise DatabaseError(f"{self.path} is closed; open the database again")
        if self._worker is None or not self._worker.alive:
            self._worker = _Worker(self.path)
        return self._worker

    def table_names(self) -> list[str]:
        result = self.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
            row_limit=100_000,
            count_limit=100_000,
        )
        return [row[0] for row in result.rows]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def __enter__(self) -> SQLiteDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
