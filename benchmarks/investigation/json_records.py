"""The records of a JSON-list or JSONL file, each with the line it starts on; a bad record is reported, not fatal.

Question files come from others and are imperfect. A problem confined to one record (bad JSON
on one JSONL line, a duplicated key, an unpaired surrogate, nesting too deep) marks that record
with its reason so the caller can skip and report it; a problem with the file as a whole (not
there, not UTF-8 text in a JSON list, a syntax error that hides where records end, no records at
all) is a `QuestionFileError` naming the file and line. A UTF-8 byte-order mark is accepted.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.investigation.errors import QuestionFileError

_OTHER_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32", codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16",
}  # fmt: skip
_SPACE = " \t\r\n"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class RawRecord:
    """One record as read: its value, or why it cannot be used."""

    line: int
    value: Any = None
    problem: str | None = None


class _Decoder:
    """json decoding that notes duplicated keys instead of keeping the last value silently."""

    def __init__(self) -> None:
        self.duplicates: list[str] = []
        self._json = json.JSONDecoder(object_pairs_hook=self._object)

    def _object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                self.duplicates.append(key)
            result[key] = value
        return result

    def decode(self, text: str, position: int) -> tuple[Any, int]:
        self.duplicates = []
        return self._json.raw_decode(text, position)


def _surrogate(value: Any) -> str | None:
    """The first unpaired surrogate in any string of the value (valid JSON escapes, not valid Unicode)."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return f"\\u{ord(found.group()):04x}" if found else None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    return next((hit for item in items if (hit := _surrogate(item)) is not None), None)


def _record(line: int, value: Any, duplicates: list[str]) -> RawRecord:
    if duplicates:
        return RawRecord(line, problem=f"key {duplicates[0]!r} appears twice in the record; keep one")
    surrogate = _surrogate(value)
    if surrogate is not None:
        return RawRecord(line, problem=f"text holds an unpaired surrogate ({surrogate}), which is not valid Unicode")
    return RawRecord(line, value)


def _text_encoding_check(path: Path, raw: bytes) -> None:
    """UTF-16 and UTF-32 files (by their byte-order mark) are file errors: every line would be garbage."""
    for bom, name in _OTHER_BOMS.items():
        if raw.startswith(bom):
            raise QuestionFileError(f"{path}: the file is {name} text (it starts with a {name} byte-order mark); save it as UTF-8")


def _text(path: Path, raw: bytes) -> str:
    """The whole file as text (a JSON list cannot be read line by line)."""
    _text_encoding_check(path, raw)
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise QuestionFileError(f"{path}, line {line}: not UTF-8 text (byte {column} of the line); save the file as UTF-8") from None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in _SPACE:
        position += 1
    return position


def _list_records(path: Path, text: str) -> Iterator[RawRecord]:
    """Records of a JSON list; a syntax error ends the file (where the next record starts is unknown)."""
    decoder = _Decoder()
    position = text.index("[") + 1
    while True:
        position = _skip_space(text, position)
        line = text.count("\n", 0, position) + 1
        if position < len(text) and text[position] == "]":
            rest = _skip_space(text, position + 1)
            if rest < len(text):
                raise _NotOneList
            return
        try:
            value, end = decoder.decode(text, position)
        except json.JSONDecodeError as error:
            raise QuestionFileError(f"{path}, line {error.lineno}: not valid JSON ({error.msg} at column {error.colno})") from None
        except RecursionError:
            raise QuestionFileError(f"{path}, line {line}: the record is nested too deeply to read") from None
        except ValueError as error:  # e.g. an integer with more digits than Python converts
            raise QuestionFileError(f"{path}, line {line}: not readable JSON ({error})") from None
        yield _record(line, value, decoder.duplicates)
        position = _skip_space(text, end)
        if position < len(text) and text[position] == ",":
            position += 1
        elif position >= len(text) or text[position] != "]":
            line = text.count("\n", 0, position) + 1
            raise QuestionFileError(f"{path}, line {line}: expected ',' or ']' between records")


def _line_records(path: Path, raw: bytes) -> Iterator[RawRecord]:
    """Records of a JSONL file, one per non-blank line; a bad line is a bad record."""
    decoder = _Decoder()
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as error:
            yield RawRecord(number, problem=f"not UTF-8 text (byte {error.start + 1} of the line)")
            continue
        if not line.strip():
            continue
        try:
            value, end = decoder.decode(line, _skip_space(line, 0))
            if _skip_space(line, end) != len(line):
                raise json.JSONDecodeError("extra data after the record", line, end)
        except json.JSONDecodeError as error:
            yield RawRecord(number, problem=f"not valid JSON ({error.msg} at column {error.colno})")
        except RecursionError:
            yield RawRecord(number, problem="the record is nested too deeply to read")
        except ValueError as error:
            yield RawRecord(number, problem=f"not readable JSON ({error})")
        else:
            yield _record(number, value, decoder.duplicates)


class _NotOneList(Exception):
    """Text follows the list's closing ']': the file may be JSONL whose first record is a list."""


def read_records(path: Path, form: str | None = None) -> tuple[str, list[RawRecord]]:
    """("list" or "lines", the records). Without a `form`, a file whose text is one JSON list is a list, else JSONL."""
    if not path.is_file():
        raise QuestionFileError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise QuestionFileError(f"{path}: cannot read the file ({error.strerror})") from None
    body = raw.removeprefix(codecs.BOM_UTF8)
    records = None
    if form != "lines" and body.lstrip(_SPACE.encode()).startswith(b"["):
        try:
            kind, records = "list", list(_list_records(path, _text(path, raw)))
        except _NotOneList:
            if form == "list":
                raise QuestionFileError(f"{path}: unexpected text after the list's closing ']'") from None
    if records is None:
        _text_encoding_check(path, raw)
        kind, records = "lines", list(_line_records(path, body))
        if len(records) > 1 and all(r.problem for r in records) and body.lstrip(_SPACE.encode()).startswith(b"{"):
            try:
                whole = json.loads(body.decode("utf-8", errors="replace"))
            except ValueError:
                whole = None
            if isinstance(whole, dict):
                raise QuestionFileError(f"{path}: the file holds one JSON object over several lines; "
                                        "write a JSON list [ {...}, {...} ] or one record per line (JSONL)")  # fmt: skip
    if not records:
        raise QuestionFileError(f"{path}: the file holds no records (it is empty or an empty list); expected questions")
    return kind, records
