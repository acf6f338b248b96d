"""The first guard on an agent's SQL: a lexical check that lets through one read statement only.

It blanks comments and quoted text, then refuses stacked statements, any first keyword but a
read (SELECT, WITH, EXPLAIN, reading PRAGMAs, SHOW), write words, locking reads, SELECT ... INTO,
and functions that reach outside the log tables or escape the per-statement limits. It is
lexical and cannot know every dialect's grammar, so the engines' own read-only modes stand
behind it (see `sqlite_database` and `server_database`).
"""

from __future__ import annotations

import re

from benchmarks.investigation.database_protocol import QueryRefused

MAX_SQL_CHARS = 100_000  # a statement's text; longer ones are refused before any work
READ_ONLY_HINT = "this database is read-only; only SELECT/WITH/EXPLAIN/PRAGMA-read statements are allowed"

_FIRST_KEYWORDS = {
    "sqlite": ("SELECT", "WITH", "EXPLAIN", "PRAGMA", "VALUES"),
    "server": ("SELECT", "WITH", "EXPLAIN", "SHOW", "DESCRIBE", "DESC", "VALUES"),
}
# Words that only appear in statements that change something; a function of the same name
# (MySQL REPLACE(), INSERT()) is followed by "(" and is not matched.
_WRITE_WORDS = re.compile(
    r"\b(INSERT|UPDATE|DELETE|REPLACE|MERGE|UPSERT|TRUNCATE|CREATE|DROP|ALTER|RENAME|GRANT|REVOKE"
    r"|ATTACH|DETACH|VACUUM|REINDEX|LOAD|COPY|CALL|HANDLER|LOCK|UNLOCK|KILL|SHUTDOWN|FLUSH|INSTALL"
    r"|UNINSTALL|PREPARE|EXECUTE|DEALLOCATE)\b(?!\s*\()"
)
_LOCKING = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE|KEY\s+SHARE)\b|\bLOCK\s+IN\s+SHARE\s+MODE\b")
_INTO_FILE = re.compile(r"\bINTO\s+(?:OUTFILE|DUMPFILE)\b")
_INTO = re.compile(r"\bINTO\b")
# SQLite functions that reach outside the data (the SQLite authorizer refuses the same names), and why.
SQLITE_DENIED_FUNCTIONS = {
    "load_extension": "loads native code into the database engine",
    "fts3_tokenizer": "returns or registers a memory address (a pointer), not data",
    "fts5": "exchanges memory addresses (pointers) with the engine, not data",
    "sqlite_log": "writes to the engine's error log",
    "rtreenode": "is an r-tree debugging function that decodes raw index blobs",
    "rtreedepth": "is an r-tree debugging function that decodes raw index blobs",
    "rtreecheck": "is an r-tree debugging function",
    "optimize": "rewrites a full-text index",
}
_SERVER_FILE_FUNCTIONS = {
    "mysql": re.compile(r"\b(LOAD_FILE)\s*\("),
    "postgresql": re.compile(
        r"\b(PG_READ_FILE|PG_READ_BINARY_FILE|PG_LS_DIR|PG_STAT_FILE|LO_IMPORT|LO_EXPORT|DBLINK\w*|SET_CONFIG"
        r"|PG_TERMINATE_BACKEND|PG_CANCEL_BACKEND|PG_RELOAD_CONF)\s*\("
    ),
    "sqlite": re.compile(rf"\b({'|'.join(map(str.upper, SQLITE_DENIED_FUNCTIONS))})\s*\("),
}
# Server functions that escape the per-statement guards: a named lock outlives the statement on
# the pooled session (and blocks others); BENCHMARK() swallows the statement time limit and
# comes back "ok" with 0 instead of a timeout.
_SERVER_SESSION_FUNCTIONS = {
    "mysql": re.compile(r"\b(GET_LOCK|RELEASE_LOCK|RELEASE_ALL_LOCKS|IS_FREE_LOCK|IS_USED_LOCK|BENCHMARK)\s*\("),
    "postgresql": re.compile(r"\b(PG_(?:TRY_)?ADVISORY_\w+)\s*\("),
}
_SESSION_FUNCTION_REASONS = {
    "BENCHMARK": "runs an expression repeatedly past the time limit (it returns 0 instead of a timeout)",
}
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_]\w*)?\$")
_PRAGMA = re.compile(r"PRAGMA\s+(?:\w+\s*\.\s*)?(\w+)\s*(=|\()?", re.IGNORECASE)

# PRAGMAs an investigator may run; the first group takes a table/index name, which is not a setting.
PRAGMAS_WITH_ARGUMENT = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
     "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"}
)  # fmt: skip
PRAGMAS_READABLE = PRAGMAS_WITH_ARGUMENT | {
    "database_list", "collation_list", "function_list", "module_list", "pragma_list", "compile_options",
    "encoding", "page_count", "page_size", "freelist_count", "user_version", "application_id",
    "schema_version", "data_version", "journal_mode", "query_only", "foreign_keys",
    "read_uncommitted",  # SQLAlchemy reads it on connect
}  # fmt: skip


def _family(dialect: str) -> str:
    return "sqlite" if dialect == "sqlite" else "server"


def pragma_refusal(name: str, value: str | None) -> str | None:
    """Why a PRAGMA is refused, or None: only reading pragmas pass, a value sets a setting."""
    name = name.lower()
    if name not in PRAGMAS_READABLE:
        return f"PRAGMA {name} is not allowed; only reading pragmas such as PRAGMA table_info(SigninLogs) are"
    if value is not None and name not in PRAGMAS_WITH_ARGUMENT:
        return f"PRAGMA {name} with a value changes a setting; {READ_ONLY_HINT}"
    return None


def _quote_end(sql: str, start: int, close: str, backslash: bool) -> int:
    """Index just past the quote that closes the one at `start` ('' doubles; \\ escapes if `backslash`)."""
    i = start + 1
    while i < len(sql):
        char = sql[i]
        if backslash and char == "\\":
            i += 2
            continue
        if char == close:
            if close != "]" and sql.startswith(close, i + 1):
                i += 2
                continue
            return i + 1
        i += 1
    raise QueryRefused(f"unterminated quote {sql[start]} (starting at character {start + 1})")


def _comment_end(sql: str, start: int, nested: bool) -> int:
    """Index just past the */ closing the /* at `start` (PostgreSQL nests block comments)."""
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth = depth + 1 if nested or depth == 0 else depth
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise QueryRefused(f"unterminated /* comment (starting at character {start + 1})")


def _starts_line_comment(sql: str, i: int, mysql: bool) -> bool:
    """'--' (in MySQL only when a space or the end follows: there `5--1` is arithmetic), or MySQL's '#'."""
    if sql.startswith("--", i):
        return not mysql or sql[i + 2 : i + 3] in ("", " ", "\t", "\n", "\r", "\f", "\v")
    return mysql and sql[i] == "#"


def _after_word(sql: str, i: int) -> bool:
    return i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_")


def _scan(sql: str, dialect: str) -> tuple[str, int | None, int | None]:
    """The code with comments blanked and quoted text emptied, and where the first ';' is in it and in `sql`."""
    mysql, postgres, sqlite = dialect == "mysql", dialect == "postgresql", dialect == "sqlite"
    out: list[str] = []
    length = 0  # len("".join(out))
    code_end: int | None = None
    sql_end: int | None = None
    i = 0
    while i < len(sql):
        char = sql[i]
        if _starts_line_comment(sql, i, mysql):
            end = sql.find("\n", i)
            i, piece = (len(sql) if end < 0 else end), " "
        elif sql.startswith("/*", i):
            if mysql and (sql.startswith("/*!", i) or sql.startswith("/*M!", i)):
                raise QueryRefused("executable comments (/*! ... */) are not allowed")
            i, piece = _comment_end(sql, i, nested=postgres), " "
        elif char in "'\"`" or (char == "[" and sqlite):
            escape_string = postgres and char == "'" and i > 0 and sql[i - 1] in "eE" and not _after_word(sql, i - 1)
            backslash = (mysql and char != "`") or escape_string
            i = _quote_end(sql, i, "]" if char == "[" else char, backslash)
            piece = "''" if char == "'" else '""'
        elif char == "$" and postgres and not _after_word(sql, i) and (tag := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(tag.group(0), tag.end())
            if end < 0:
                raise QueryRefused(f"unterminated {tag.group(0)} quote (starting at character {i + 1})")
            i, piece = end + len(tag.group(0)), "''"
        else:
            if char == ";" and code_end is None:
                code_end, sql_end = length, i
            i, piece = i + 1, char
        out.append(piece)
        length += len(piece)
    return "".join(out), code_end, sql_end


def check_sql(sql: str, dialect: str) -> str:
    """Refuse anything but one read statement (`QueryRefused`); return it without a trailing ';'.

    This is the first guard only: it is lexical and cannot know every dialect's grammar, so the
    engine's read-only mode and the authorizer still stand behind it.
    """
    return check_statement(sql, dialect)[0]


def check_statement(sql: str, dialect: str) -> tuple[str, str]:
    """`check_sql`, also returning the statement's first keyword (upper case)."""
    if not isinstance(sql, str):
        raise TypeError(f"SQL must be a string, not {type(sql).__name__}")
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"the query is {len(sql):,} characters long; at most {MAX_SQL_CHARS:,} are allowed")
    family = _family(dialect)
    code, code_end, sql_end = _scan(sql, dialect)
    head = code if code_end is None else code[:code_end]
    if code_end is not None and code[code_end:].strip(" \t\r\n\f\v;"):
        raise QueryRefused("only one statement per query is allowed; remove the ';' and what follows it")
    head = head.strip()
    if not head:
        raise QueryRefused("the query is empty; write one SELECT statement")
    first = re.match(r"[\s(]*([A-Za-z_]+)", head)
    keyword = first.group(1).upper() if first else ""
    allowed = _FIRST_KEYWORDS[family]
    if keyword not in allowed:
        shown = keyword or head.split()[0][:20]
        raise QueryRefused(f"{shown} statements are not allowed: {READ_ONLY_HINT.split(';')[0]}; "
                           f"a query must start with {', '.join(allowed)}")  # fmt: skip
    if keyword == "PRAGMA":
        pragma = _PRAGMA.match(head)
        if pragma is None:
            raise QueryRefused("write PRAGMA name or PRAGMA name(table)")
        reason = pragma_refusal(pragma.group(1), pragma.group(2))
        if pragma.group(2) == "=":
            reason = f"PRAGMA {pragma.group(1)} = ... sets a value; {READ_ONLY_HINT}"
        if reason:
            raise QueryRefused(reason)
        return (sql if sql_end is None else sql[:sql_end]), keyword
    upper = head.upper()
    if _LOCKING.search(upper):
        raise QueryRefused("locking reads (FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE) are not allowed")
    if _INTO_FILE.search(upper):
        raise QueryRefused("SELECT ... INTO OUTFILE/DUMPFILE writes a file on the server and is not allowed")
    if _INTO.search(upper):
        raise QueryRefused("SELECT ... INTO stores the result (a table or variable) and is not allowed")
    if keyword not in ("SHOW", "DESCRIBE", "DESC"):  # SHOW CREATE TABLE reads
        write = _WRITE_WORDS.search(upper)
        if write:
            raise QueryRefused(f"{write.group(1)} inside a query changes data; {READ_ONLY_HINT}")
    functions = _SERVER_FILE_FUNCTIONS.get(dialect)
    forbidden = functions.search(upper) if functions else None
    if forbidden:
        name = forbidden.group(1).lower()
        why = SQLITE_DENIED_FUNCTIONS.get(name, "reaches outside the log tables")
        raise QueryRefused(f"{name}() is not allowed: it {why}")
    session = _SERVER_SESSION_FUNCTIONS.get(dialect)
    escaping = session.search(upper) if session else None
    if escaping:
        name = escaping.group(1)
        why = _SESSION_FUNCTION_REASONS.get(name, "takes or inspects a lock that outlives the query")
        raise QueryRefused(f"{name.lower()}() {why} and is not allowed")
    return (sql if sql_end is None else sql[:sql_end]), keyword

