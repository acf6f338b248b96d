"""Streams of texts for the cascade: the movie-review sets, shifted streams, and any CSV or JSONL file."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atlas.errors import AtlasError
from benchmarks.streams.movie_reviews import LABEL_NAMES, SOURCES, Source, load_reviews, seeded_reviews
from benchmarks.streams.text_sources import CLASSES as TEXT_SOURCE_CLASSES

BUILT_IN = ("imdb", "rotten_tomatoes", "imdb-then-rt", "imdb-by-length", "text-sources")
BUILT_IN_LABELS = {name: tuple(LABEL_NAMES) for name in BUILT_IN[:4]} | {"text-sources": TEXT_SOURCE_CLASSES}


class StreamError(AtlasError, ValueError):
    """A stream that cannot be read: the message names the file, the line and what to do."""


@dataclass(frozen=True)
class StreamItem:
    id: str
    text: str
    label: int | None  # None when the stream has no labels
    source: str


@dataclass(frozen=True)
class Stream:
    name: str
    items: list[StreamItem]
    labels: tuple[str, ...]

    @property
    def labelled(self) -> bool:
        return all(item.label is not None for item in self.items)


def _from_reviews(name: str, reviews) -> list[StreamItem]:
    return [StreamItem(r.id, r.text, r.label, r.source) for r in reviews]


def load_stream(spec: str, limit: int | None = None, seed: int = 0, labels: Sequence[str] | None = None) -> Stream:
    """A named built-in stream (seeded order) or a CSV/JSONL file with `text` and optional `label`.

    `labels`: the task's class names. A built-in stream must have exactly these; a file's labels
    must all be among them (or be class indices 0..K-1). Default: the stream's own labels (a file:
    negative, positive)."""
    own = BUILT_IN_LABELS.get(spec)
    if own is not None:
        if labels is not None and tuple(labels) != own:
            raise StreamError(f"the stream {spec!r} is labelled {', '.join(own)}, but the task's labels are {', '.join(labels)}: "
                              f"use the stream's own task (leave out --task/--labels) or another stream")
        return Stream(spec, _built_in(spec, limit, seed), own)
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".jsonl", ".json") or path.exists():
        wanted = tuple(labels) if labels is not None else tuple(LABEL_NAMES)
        return Stream(path.name, _read_file(path, wanted, limit), wanted)
    raise StreamError(f"unknown stream {spec!r}: use one of {', '.join(BUILT_IN)}, or a .csv/.jsonl file with a text column")


def _built_in(spec: str, limit: int | None, seed: int) -> list[StreamItem]:
    if spec == "imdb" or spec == "rotten_tomatoes":
        source: Source = "imdb" if spec == "imdb" else "rotten_tomatoes"
        return _from_reviews(spec, seeded_reviews(source, seed, limit))
    if spec == "imdb-then-rt":
        half = None if limit is None else limit // 2
        rest = None if limit is None else limit - limit // 2
        return _from_reviews("imdb", seeded_reviews("imdb", seed, half)) + _from_reviews("rotten_tomatoes", seeded_reviews("rotten_tomatoes", seed, rest))
    if spec == "imdb-by-length":
        return sorted(_from_reviews("imdb", seeded_reviews("imdb", seed, limit)), key=lambda i: (len(i.text), i.id))
    from benchmarks.streams.text_sources import text_sources

    return [StreamItem(t.id, t.text, t.label, t.source) for t in text_sources(seed, limit)]


def _label_index(text: str, labels: tuple[str, ...]) -> int | None:
    folded = [label.lower() for label in labels]
    if text.lower() in folded:
        return folded.index(text.lower())
    if text.isdigit() and int(text) < len(labels):
        return int(text)
    return None


def _decode(path: Path) -> str:
    """The file as text (UTF-8, a leading BOM dropped); bad bytes are an error naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise StreamError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x} at column {column}); "
                          "save the file as UTF-8") from None


@contextmanager
def _csv_fields_up_to(size: int):
    """Let a CSV field be as long as the file (the csv module refuses fields over 128 KB by default)."""
    before = csv.field_size_limit()
    csv.field_size_limit(max(before, size + 1))
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _read_file(path: Path, labels: tuple[str, ...], limit: int | None) -> list[StreamItem]:
    rows = _read_rows(path, limit)
    items = [_item(row, where, n) for n, (where, row) in enumerate(rows)]
    return _with_labels(path, items, [row.get("label") for _, row in rows], [where for where, _ in rows], labels)


def _read_rows(path: Path, limit: int | None, what: str = "stream") -> list[tuple[str, dict]]:
    """The rows of a CSV/JSONL file, each with where it stands (`file, line N`) for errors."""
    if not path.is_file():
        raise StreamError(f"{path}: no such {what} file; give the path of an existing .csv or .jsonl file with a text column")
    text = _decode(path)
    rows: list[tuple[str, dict]] = []  # (where, row)
    if path.suffix.lower() == ".csv":
        with _csv_fields_up_to(len(text)):
            reader = csv.reader(io.StringIO(text, newline=""))
            try:
                header = next(reader, None)
                if not header or "text" not in [h.strip() for h in header]:
                    raise StreamError(f"{path}, line 1: the header needs a 'text' column (found {header or 'nothing'})")
                names = [h.strip() for h in header]
                for fields in reader:
                    where = f"{path}, line {reader.line_num}"
                    if not fields:
                        continue
                    if len(fields) != len(names):
                        raise StreamError(f"{where}: {len(fields)} fields but the header has {len(names)} ({', '.join(names)}); "
                                          "put a text that holds commas, quotes or line breaks in double quotes")
                    rows.append((where, dict(zip(names, fields))))
                    if limit and len(rows) >= limit:
                        break
            except csv.Error as error:
                raise StreamError(f"{path}, line {reader.line_num}: not valid CSV ({error})") from None
    else:
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise StreamError(f"{where}: not valid JSON ({error.msg}, column {error.colno})") from None
            except RecursionError:
                raise StreamError(f"{where}: JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise StreamError(f"{where}: expected a JSON object with a 'text' field")
            rows.append((where, row))
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise StreamError(f"{path}: the {what} is empty (no rows with a 'text' field)")
    return rows


UNLABELLED_WORDS = ("auto", "none")  # what `--unlabelled` takes besides a file


def unlabelled_texts(spec: str, stream: Stream) -> tuple[list[str], int]:
    """In-domain text from outside the stream, for levels that learn without labels (topics): `auto` (a
    built-in review stream: the reviews of its sources that it does not hold; other streams: none), `none`,
    or a CSV/JSONL file with a `text` column (its labels, if any, are never read). Texts that are also texts
    of stream items are dropped (a file may hold them, and a source may hold the same review twice), since
    no level may see an item before the cascade has answered it.
    Returns the texts and how many were dropped."""
    if spec == "none":
        return [], 0
    if spec == "auto":
        sources = {item.source for item in stream.items}
        if stream.name not in BUILT_IN or not sources <= set(SOURCES):
            return [], 0
        held = {item.id for item in stream.items}
        texts = [r.text for source in sorted(sources) for r in load_reviews(source) if r.id not in held]  # type: ignore[arg-type]
    else:
        path = Path(spec)
        if path.suffix.lower() not in (".csv", ".jsonl", ".json") and not path.exists():
            raise StreamError(f"unlabelled text {spec!r}: give auto, none, or a .csv/.jsonl file with a text column")
        texts = [_text(row, where) for where, row in _read_rows(path, None, "unlabelled text")]
    in_stream = {_comparable(item.text) for item in stream.items}
    kept = [text for text in texts if _comparable(text) not in in_stream]
    return kept, len(texts) - len(kept)


def _comparable(text: str) -> str:
    """A text as the no-peeking check compares it: the line breaks the review sources carry (`<br />`) and runs
    of white space as one space, case folded, so a copy of a stream item in a user's file is caught as well."""
    return " ".join(text.replace("<br />", " ").replace("<br/>", " ").split()).casefold()


def _with_labels(path: Path, items: list[StreamItem], raw: list, wheres: list[str], labels: tuple[str, ...]) -> list[StreamItem]:
    """Map the file's label values onto the task's classes; any value outside them is an error that
    lists the file's label set beside the task's."""
    out, unknown = [], None
    for item, value, where in zip(items, raw, wheres):
        if value is None or (isinstance(value, str) and not value.strip()):
            out.append(item)
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise StreamError(f"{where}: label {value!r} is neither a label name nor a class index")
        index = _label_index(str(value).strip(), labels)
        if index is None:
            unknown = unknown or (where, value)
            continue
        out.append(StreamItem(item.id, item.text, index, item.source))
    if unknown is not None:
        found = sorted({str(v).strip() for v in raw if v is not None and str(v).strip()}, key=str.lower)
        shown = ", ".join(found[:20]) + (f", ... ({len(found)} in all)" if len(found) > 20 else "")
        where, value = unknown
        raise StreamError(f"{where}: label {value!r} is not in the task's label set. The file's labels: {shown}; "
                          f"the task's labels: {', '.join(labels)} (or class indices 0..{len(labels) - 1}). "
                          f"Give the task with --task FILE or --labels {','.join(found[:8])}")
    return out


def _text(row: dict, where: str) -> str:
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise StreamError(f"{where}: missing or empty 'text'")
    return text


def _item(row: dict, where: str, index: int) -> StreamItem:
    text = _text(row, where)
    raw_id = row.get("id")
    if raw_id is not None and not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool):
        raise StreamError(f"{where}: 'id' must be a string or an integer, got {raw_id!r}")
    ident = str(raw_id).strip() if raw_id is not None else ""
    return StreamItem(ident or str(index), text, None, "file")
