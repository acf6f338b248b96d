"""JSONL export and import, as pure steps the store runs. An export line is a whole pamphlet with
its history and uses, so a round trip loses nothing; an import line may also be a bare pamphlet
(text, tags, ...). Nothing here touches the database."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from memory.errors import MemoryStoreError
from memory.index import write_atomically
from memory.schema import ExportRecord, Pamphlet, PamphletIn, PamphletVersion
from memory.sqlutil import now

BATCH = 1000
Record = PamphletIn | ExportRecord


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0  # lines whose content already exists in the store (skipped)
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    renumbered: dict[int, int] = field(default_factory=dict)  # exported id -> new id (id was taken)
    ids: list[int] = field(default_factory=list)


def export_line(pamphlet: Pamphlet, history: list[PamphletVersion], uses: list[dict[str, Any]]) -> str:
    return ExportRecord(**pamphlet.model_dump(), history=history, uses=uses).model_dump_json() + "\n"


def write_export(path: Path, lines: Iterable[str]) -> None:
    """Write the export all-or-nothing; an unwritable place is a clear error, not a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, (line.encode("utf-8") for line in lines))
    except PermissionError as exc:
        raise MemoryStoreError(f"cannot write the export to {path}: {exc.strerror} (is its folder read-only?); choose another path") from None
    except OSError as exc:
        raise MemoryStoreError(f"cannot write the export to {path}: {exc.strerror or exc}") from None


def parse_line(raw: bytes) -> tuple[Record | None, str | None]:
    """One line's record, or why it is not one."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(data, dict):
        return None, f"expected a JSON object, got {type(data).__name__}"
    model = ExportRecord if "version" in data and "created_at" in data else PamphletIn
    try:
        return model.model_validate(data), None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}" for err in exc.errors())
        return None, problems
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a plan nested too deep to hash
        return None, f"cannot be read as a pamphlet ({type(exc).__name__}: {exc})"


def read_jsonl(path: Path) -> tuple[list[tuple[int, Record]], list[tuple[int, str]]]:
    """Every line validated: (line number, record) pairs and (line number, problem) pairs.
    Lines are split on bytes, so a line of bad UTF-8 is reported with its number like any other."""
    if not path.is_file():
        raise MemoryStoreError(f"import file {path} does not exist")
    records, problems = [], []
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise MemoryStoreError(f"cannot read import file {path}: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark
            if not raw.strip():
                continue
            record, problem = parse_line(raw)
            if problem is not None:
                problems.append((number, problem))
            else:
                assert record is not None  # parse_line gives a record or a problem
                records.append((number, record))
    return records, problems


def count_lines(path: Path) -> int | None:
    """Non-blank lines, for a progress bar (bytes only: never fails on bad text)."""
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        return sum(1 for raw in handle if raw.strip())


def fields_of(record: Record) -> PamphletIn:
    return PamphletIn.model_validate(record.model_dump(include=set(PamphletIn.model_fields)))


def fresh_records(records: Iterable[Record], existing_hashes: set[str]) -> tuple[list[Record], int]:
    """Records whose content is not in the store yet (nor earlier in the file); and how many were not."""
    fresh, duplicates = [], 0
    for record in records:
        digest = fields_of(record).compute_hash()
        if digest in existing_hashes and not getattr(record, "deleted", False):
            duplicates += 1
            continue
        existing_hashes.add(digest)
        fresh.append(record)
    return fresh, duplicates


def kept_fields(record: Record, taken: set[int]) -> dict[str, Any]:
    """Exported records keep their timestamps, version and deleted flag; their id if it is free."""
    if not isinstance(record, ExportRecord):
        return {}
    kept: dict[str, Any] = {
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "version": record.version,
        "deleted": record.deleted,
    }
    if record.id not in taken:
        kept["id"] = record.id
        taken.add(record.id)
    return kept


def history_rows(batch: list[Record], ids: list[int], changed_by: str) -> tuple[list[dict], list[dict]]:
    """Version and use rows for an imported batch: an export's own history, or one 'imported' entry."""
    versions, uses = [], []
    for record, new_id in zip(batch, ids):
        if isinstance(record, ExportRecord) and record.history:
            versions += [{**v.model_dump(exclude={"pamphlet_id"}), "pamphlet_id": new_id} for v in record.history]
            uses += [
                {"pamphlet_id": new_id, "episode_id": u["episode_id"], "reward": u["reward"], "used_at": _parse_time(u["used_at"])}
                for u in record.uses
            ]
        else:
            versions.append(
                {"pamphlet_id": new_id, "version": getattr(record, "version", 1), "change": "imported", "changed_by": changed_by,
                 "changed_at": now(), "snapshot": record.model_dump(mode="json", include=set(PamphletIn.model_fields))}
            )
    return versions, uses


def _parse_time(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


