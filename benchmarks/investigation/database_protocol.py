"""What every read-only log database offers: the protocol, its result, its errors, and row fetching.

Results are fetched in batches: at most `row_limit` rows are kept and at most `count_limit`
counted, so a billion-row result costs no more than a small one.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, Self

FETCH_BATCH = 1000
OUT_OF_MEMORY = (
    "the statement needed more memory than the sandbox allows and was stopped; "
    "select fewer or shorter values (substr(), length())"
)


@dataclass(frozen=True)
class QueryResult:
    """The first rows of a result and how many rows it had (counted up to a cap)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    total_rows: int
    more_than: bool
    seconds: float


class QueryRefused(Exception):
    """The statement is not allowed (it could write, or is several statements); `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"refused: {reason}")


class QueryTimeout(Exception):
    """The statement ran past its time limit and was stopped."""


class QueryFailed(Exception):
    """The engine rejected the statement; the message is the engine's."""


class ReadOnlyDatabase(Protocol):
    dialect: str

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        time_limit_s: float = 5.0,
        row_limit: int = 15,
        count_limit: int = 10_000,
    ) -> QueryResult: ...

    def table_names(self) -> list[str]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *_exc: object) -> None: ...


def to_python(value: Any) -> Any:
    """A plain value for display: str, int, float, bool or None."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def collect_rows(
    fetchmany: Callable[[int], Sequence[Sequence[Any]]],
    row_limit: int,
    count_limit: int,
    deadline: float = math.inf,
) -> tuple[list[tuple[Any, ...]], int, bool]:
    """Keep the first `row_limit` rows, count up to `count_limit`; True when rows remain past the cap."""
    kept: list[tuple[Any, ...]] = []
    total = 0
    while True:
        batch = fetchmany(min(FETCH_BATCH, count_limit + 1 - total))
        if not batch:
            return kept, total, False
        room = row_limit - len(kept)
        if room > 0:
            kept.extend(tuple(to_python(v) for v in row) for row in batch[:room])
        total += len(batch)
        if total > count_limit:
            return kept, count_limit, True
        if time.monotonic() > deadline:
            raise QueryTimeout("the statement's rows arrived past its time limit")


def check_limits(time_limit_s: float, row_limit: int, count_limit: int) -> None:
    if not time_limit_s > 0:
        raise ValueError(f"time_limit_s must be positive; got {time_limit_s!r}")
    if row_limit < 0 or count_limit < max(row_limit, 1):
        raise ValueError(f"need 0 <= row_limit <= count_limit and count_limit >= 1; got {row_limit}, {count_limit}")

