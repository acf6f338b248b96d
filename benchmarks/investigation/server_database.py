"""The server engine: a SQLAlchemy URL of a database server (MariaDB/MySQL, PostgreSQL), each query in a read-only session.

Behind the lexical check (`sql_guard`), every pooled connection's session is read-only and each
statement runs under the server's own statement time limit. A statement still running
`CUTOFF_GRACE_S` past its limit is cut off: its socket is shut down (so the client returns at
once) and the server is asked to cancel it (PostgreSQL's cancel request, MariaDB/MySQL `KILL`).

These guards are defence in depth, not a permission system. For a user's own server, connect
as a least-privilege database user that can only read the log tables (e.g. MariaDB
`GRANT SELECT ON logs.* TO 'investigator'@'%'`, PostgreSQL `GRANT SELECT ON ALL TABLES IN
SCHEMA logs`): the read-only session and the lexical check stop writes, but a query still
reads whatever the user's grants allow, such as other schemas or `mysql.user`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

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
from benchmarks.investigation.sql_guard import READ_ONLY_HINT, check_statement

log = logging.getLogger(__name__)

# The server's own limit should fire first. A statement still running this long past its limit (a
# function that ignores the limit, such as MariaDB's REGEXP_REPLACE on a long string) is cut off.
CUTOFF_GRACE_S = 0.5
_MYSQL_TIMEOUT_CODES = frozenset({1969, 3024})  # MariaDB max_statement_time, MySQL max_execution_time
_MYSQL_READ_ONLY_CODES = frozenset({1792})  # cannot execute statement in a READ ONLY transaction
_PG_TIMEOUT_STATE = "57014"  # query_canceled
_PG_READ_ONLY_STATE = "25006"  # read_only_sql_transaction
_PG_STREAMABLE = ("SELECT", "WITH", "VALUES")  # what a server-side cursor (DECLARE) can run


def _dbapi_message(error: BaseException | None) -> str:
    """The engine's own message: pymysql's (code, text) text, or psycopg2's first line.

    SQLAlchemy types a DBAPIError's `orig` as optional: without one, the message is "None".
    """
    args: tuple[Any, ...] = getattr(error, "args", ())
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return args[1]
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__


def _abandon(connection: Connection, result: CursorResult[Any]) -> None:
    """Close the connection under a half-read result instead of draining it (that could take forever).

    pymysql's unbuffered result would still try to drain the closed socket when garbage-collected
    (an ignored AttributeError); marking it finished stops that.
    """
    pending = getattr(result.cursor, "_result", None)
    if pending is not None and getattr(pending, "unbuffered_active", False):
        pending.unbuffered_active = False
    connection.invalidate()


class _Cutoff:
    """A timer that cuts off one statement if it is still running at `seconds` (see `SQLAlchemyDatabase.cut_off`)."""

    def __init__(self, database: SQLAlchemyDatabase, dbapi_connection: Any, seconds: float) -> None:
        self.fired = False
        self._database = database
        self._dbapi_connection = dbapi_connection
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Cutoff:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        self.fired = True
        try:
            self._database.cut_off(self._dbapi_connection)
        except Exception as error:  # the socket is already closed, or the server is gone: the wait ends either way
            log.warning("cutting off an overdue statement on %s: %s", self._database.url, error)


class SQLAlchemyDatabase:
    """A database server's SQLAlchemy URL, each query in a read-only session with a server-side statement time limit.

    `read_timeout_s` is a client-side safety net for MySQL drivers: a socket read that waits
    longer (a server that ignores its limit) fails instead of hanging. Keep time limits below it.
    """

    def __init__(self, url: str, *, read_timeout_s: float = 120.0, connect_timeout_s: int = 10) -> None:
        try:
            parsed = make_url(url)
        except sa_exc.ArgumentError as error:
            raise DatabaseError(
                f"{url!r} is not a database URL ({error}); write e.g. mysql+pymysql://user@host:3306/db"
            ) from error
        self.url = parsed.render_as_string(hide_password=True)
        backend, _, driver = parsed.drivername.partition("+")  # get_driver_name() would import the dialect
        self.dialect = "mysql" if backend == "mariadb" else backend
        self.read_timeout_s = read_timeout_s
        self.is_mariadb = False
        connect_args: dict[str, Any] = {}
        options: dict[str, Any] = {"pool_pre_ping": True}
        if self.dialect == "mysql" and driver in ("", "pymysql", "mysqldb"):
            connect_args = {"read_timeout": read_timeout_s, "connect_timeout": connect_timeout_s}
        elif self.dialect == "postgresql" and driver in ("", "psycopg2", "psycopg"):
            connect_args = {"connect_timeout": connect_timeout_s}
        elif self.dialect == "sqlite":
            raise DatabaseError(
                f"{self.url} is a SQLite file; open it with open_database() or SQLiteDatabase, "
                "which run its statements in a worker process that can be stopped"
            )
        try:
            self._engine: Engine = create_engine(parsed, connect_args=connect_args, **options)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as error:
            raise DatabaseError(
                f"cannot use {self.url}: {error}; check the URL's database type and install its driver "
                f"(pymysql for mysql+pymysql://, psycopg2-binary for postgresql://)"
            ) from error
        event.listen(self._engine, "connect", self._configure_session)
        try:
            with self._engine.connect() as connection:
                if self.dialect == "mysql":
                    self.is_mariadb = "MariaDB" in str(connection.exec_driver_sql("SELECT VERSION()").scalar())
        except sa_exc.SQLAlchemyError as error:
            self._engine.dispose()
            cause = _dbapi_message(error.orig) if isinstance(error, sa_exc.DBAPIError) else str(error)
            raise DatabaseError(
                f"cannot connect to {self.url}: {cause}; check that the server runs and the URL, user and database"
            ) from error

    def _configure_session(self, dbapi_connection: Any, _record: Any) -> None:
        """Every pooled connection's session is read-only: a second guard behind the lexical check."""
        statement = {
            "mysql": "SET SESSION TRANSACTION READ ONLY",
            "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        }.get(self.dialect)
        if statement is None:
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        dbapi_connection.commit()

    def _arm(self, connection: Connection, time_limit_s: float) -> None:
        """Set this statement's time limit in the session."""
        milliseconds = max(1, math.ceil(time_limit_s * 1000))
        if self.dialect == "mysql":
            if self.is_mariadb:
                connection.exec_driver_sql(f"SET SESSION max_statement_time = {milliseconds / 1000:.3f}")  # 0 = none
            else:
                connection.exec_driver_sql(f"SET SESSION max_execution_time = {milliseconds}")
        elif self.dialect == "postgresql":
            connection.exec_driver_sql(f"SET statement_timeout = {milliseconds}")

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
        statement, keyword = check_statement(sql, self.dialect)
        stream = self.dialect != "postgresql" or keyword in _PG_STREAMABLE
        start = time.monotonic()
        try:
            with self._engine.connect() as connection:
                cutoff = _Cutoff(self, connection.connection.dbapi_connection, time_limit_s + CUTOFF_GRACE_S)
                try:
                    with cutoff:
                        return self._run(connection, statement, params, stream, time_limit_s, row_limit, count_limit, start)
                except sa_exc.StatementError as error:
                    if cutoff.fired:
                        connection.invalidate()
                        raise QueryTimeout(f"the statement ran longer than {time_limit_s} s and was cut off") from error
                    raise self._translate(error, connection, time_limit_s) from error
                except MemoryError as error:  # a result too big to hold
                    connection.invalidate()
                    raise QueryFailed(OUT_OF_MEMORY) from error
        except sa_exc.DBAPIError as error:  # while connecting
            raise DatabaseError(f"lost the connection to {self.url}: {_dbapi_message(error.orig)}") from error

    def _run(
        self,
        connection: Connection,
        statement: str,
        params: Mapping[str, Any] | None,
        stream: bool,
        time_limit_s: float,
        row_limit: int,
        count_limit: int,
        start: float,
    ) -> QueryResult:
        self._arm(connection, time_limit_s)
        if params:
            result = connection.execute(text(statement), dict(params), execution_options={"stream_results": stream})
        else:  # no bind parsing: ':x' and '%' in the agent's SQL stay as written
            options = {"stream_results": stream, "no_parameters": True}
            result = connection.exec_driver_sql(statement, execution_options=options)
        if not result.returns_rows:
            result.close()
            return QueryResult((), (), 0, False, time.monotonic() - start)
        columns = tuple(result.keys())
        deadline = start + time_limit_s + CUTOFF_GRACE_S
        try:
            rows, total, more = collect_rows(result.fetchmany, row_limit, count_limit, deadline)
        except QueryTimeout:
            _abandon(connection, result)
            raise
        if more:
            _abandon(connection, result)
        else:
            result.close()
        return QueryResult(columns, tuple(rows), total, more, time.monotonic() - start)

    def _translate(self, error: sa_exc.StatementError, connection: Connection, time_limit_s: float) -> Exception:
        """Map a driver error to QueryTimeout, QueryRefused, QueryFailed, or DatabaseError for a lost server."""
        timeout = QueryTimeout(f"the statement ran longer than {time_limit_s} s and was stopped")
        original = error.orig
        if not isinstance(error, sa_exc.DBAPIError) or original is None:
            return QueryFailed(str(original or error))
        code = original.args[0] if original.args and isinstance(original.args[0], int) else None
        state = getattr(original, "pgcode", None)
        message = _dbapi_message(original)
        if code in _MYSQL_TIMEOUT_CODES or state == _PG_TIMEOUT_STATE:
            return timeout
        if code == 2013 and "timed out" in message:  # pymysql read_timeout: the safety net fired
            connection.invalidate()
            return timeout
        if code in _MYSQL_READ_ONLY_CODES or state == _PG_READ_ONLY_STATE:
            return QueryRefused(f"{message}; {READ_ONLY_HINT}")
        if error.connection_invalidated:
            return DatabaseError(f"lost the connection to {self.url}: {message}; check that the server is running")
        return QueryFailed(message)

    def cut_off(self, dbapi_connection: Any) -> None:
        """Stop waiting for a statement the server did not stop: ask the server to cancel it, shut the socket."""
        thread_id = dbapi_connection.thread_id() if self.dialect == "mysql" else None
        raw_socket = getattr(dbapi_connection, "_sock", None)  # pymysql
        descriptor = raw_socket.fileno() if raw_socket is not None else dbapi_connection.fileno()  # psycopg2
        # Duplicate the descriptor before the cancel: once the cancel ends the statement, the caller may close this
        # connection and open another on the same descriptor number, whose socket a later dup would shut down.
        with socket.socket(fileno=os.dup(descriptor)) as duplicate:
            if self.dialect == "postgresql":
                dbapi_connection.cancel()
            duplicate.shutdown(socket.SHUT_RDWR)
        if thread_id is not None:
            with self._engine.connect() as other:
                other.exec_driver_sql(f"KILL {int(thread_id)}")

    def table_names(self) -> list[str]:
        inspector = inspect(self._engine)
        return sorted({*inspector.get_table_names(), *inspector.get_view_names()})

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SQLAlchemyDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
