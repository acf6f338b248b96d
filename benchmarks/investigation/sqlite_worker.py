"""The child process in which `SQLiteDatabase` runs statements, so that one which will not stop can be killed.

SQLite checks its progress handler only between VM instructions, so a single function call
(`printf('%.*c', 1000000000, 'x')`, a pathological `glob`) runs to its end whatever the
deadline says. Run here, such a statement costs the parent nothing: it waits until the time
limit plus a small margin, then kills this process and starts a new one.

Inside, the connection keeps every in-process guard: `mode=ro`, `PRAGMA query_only`, an
authorizer that allows only reads and refuses the functions of the policy it is sent, a progress
handler that stops a statement at its deadline or when this process's memory grows past the
budget, SQLite's heap limit and its length limits. A refusal is sent back as the authorizer's
(action, argument, argument) so that the parent words the reason.

Messages are pickled tuples, each preceded by its length (8 bytes, big-endian), on stdin/stdout.
The script imports only the standard library and `database_protocol` (found beside it, so the
package and its dependencies are never imported), and starts in a few milliseconds.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import sqlite3
import struct
import sys
import time
from typing import Any, BinaryIO, cast
from urllib.parse import quote

if __package__:
    from benchmarks.investigation.database_protocol import collect_rows
else:  # run as a script by SQLiteDatabase: this folder is sys.path[0]
    from database_protocol import collect_rows  # type: ignore[no-redef]

HEADER = struct.Struct(">Q")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})


def write_message(stream: BinaryIO, message: tuple[Any, ...]) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_message(stream: BinaryIO) -> tuple[Any, ...] | None:
    """The next message, or None when the other side closed the pipe."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    payload = _read_exactly(stream, HEADER.unpack(header)[0])
    return None if payload is None else pickle.loads(payload)


def resident_bytes() -> int | None:
    """This process's resident memory, from /proc (Linux); None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class GuardedConnection(sqlite3.Connection):
    """A read-only connection whose authorizer allows only reads and whose statements have a deadline."""

    def __init__(self, *args: Any, settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.readable_pragmas = frozenset(settings["readable_pragmas"])
        self.pragmas_with_argument = frozenset(settings["pragmas_with_argument"])
        self.denied_functions = frozenset(settings["denied_functions"])
        self.isolation_level = None  # never an implicit BEGIN
        self.execute("PRAGMA query_only=ON").close()  # before the authorizer, which forbids setting it
        self.execute(f"PRAGMA hard_heap_limit={int(settings['heap_limit_bytes'])}").close()  # only ever lowers
        self.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, int(settings["max_value_bytes"]))
        self.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, int(settings["max_sql_chars"]))
        self.deadline = math.inf
        self.timed_out = False
        self.out_of_memory = False
        self.denied: tuple[int, str | None, str | None] | None = None
        self._memory_ceiling: int | None = None
        self._next_memory_check = math.inf
        self.set_authorizer(self._authorize)
        self.set_progress_handler(self._progress, int(settings["progress_every"]))

    def arm(self, time_limit_s: float, memory_budget_bytes: int) -> None:
        now = time.monotonic()
        self.deadline = now + time_limit_s
        self.timed_out = self.out_of_memory = False
        self.denied = None
        resident = resident_bytes()
        self._memory_ceiling = None if resident is None else resident + memory_budget_bytes
        self._next_memory_check = now + self.settings["memory_check_every_s"]

    def _progress(self) -> int:
        now = time.monotonic()
        if now > self.deadline:
            self.timed_out = True
            return 1  # interrupts the statement
        if now >= self._next_memory_check and self._memory_ceiling is not None:
            self._next_memory_check = now + self.settings["memory_check_every_s"]
            resident = resident_bytes()
            if resident is not None and resident > self._memory_ceiling:
                self.out_of_memory = True
                return 1
        return 0

    def _allowed(self, action: int, arg1: str | None, arg2: str | None) -> bool:
        if action in _ALLOWED_ACTIONS:
            return True
        if action == sqlite3.SQLITE_FUNCTION:
            return (arg2 or "").lower() not in self.denied_functions
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            return name in self.readable_pragmas and (arg2 is None or name in self.pragmas_with_argument)
        return False

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if self._allowed(action, arg1, arg2):
            return sqlite3.SQLITE_OK
        if self.denied is None:
            self.denied = (action, arg1, arg2)
        return sqlite3.SQLITE_DENY


def connect(path: str, settings: dict[str, Any]) -> GuardedConnection:
    uri = f"file:{quote(path)}?mode=ro"  # '?', '#' or '%' in a path would end it early
    # sqlite3.connect calls `factory` like any callable; typeshed asks for a Connection subclass, so the
    # lambda that binds `settings` is cast to the class it builds.
    factory = cast("type[GuardedConnection]", lambda *a, **k: GuardedConnection(*a, settings=settings, **k))
    connection = sqlite3.connect(uri, uri=True, factory=factory)
    assert isinstance(connection, GuardedConnection)
    connection.execute("SELECT count(*) FROM sqlite_master").close()  # fails now if the file is not a database
    return connection


def run_statement(connection: GuardedConnection, request: tuple[Any, ...]) -> tuple[Any, ...]:
    """("rows", columns, rows, total, more) or ("failed", kind, detail) for one ("execute", ...) request."""
    _, statement, params, time_limit_s, row_limit, count_limit, memory_budget = request
    connection.arm(time_limit_s, memory_budget)
    cursor = connection.cursor()
    try:
        if params:
            cursor.execute(statement, params)
        else:
            cursor.execute(statement)
        columns = tuple(d[0] for d in cursor.description or ())
        rows, total, more = collect_rows(cursor.fetchmany, row_limit, count_limit) if columns else ([], 0, False)
        return ("rows", columns, tuple(rows), total, more)
    except (sqlite3.Error, sqlite3.Warning) as error:
        if connection.timed_out:
            return ("failed", "timeout", None)
        if connection.out_of_memory:
            return ("failed", "out_of_memory", None)
        if connection.denied is not None:
            return ("failed", "denied", connection.denied)
        return ("failed", "sqlite", str(error))
    except MemoryError:  # SQLITE_NOMEM: the heap limit stopped the statement
        return ("failed", "out_of_memory", None)
    finally:
        cursor.close()  # resets the statement: rows past the cap are never computed
        connection.deadline = math.inf


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Open the database named by the first message, then answer statements until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    hello = read_message(requests)
    if hello is None:
        return
    _, path, settings = hello
    try:
        connection = connect(path, settings)
    except sqlite3.Error as error:
        write_message(replies, ("failed", "open", str(error)))
        return
    write_message(replies, ("ready",))
    while (request := read_message(requests)) is not None:
        write_message(replies, run_statement(connection, request))
    connection.close()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
