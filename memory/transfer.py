"""JSONL export and import. An export line is a whole pamphlet with its history and uses, so a
round trip loses nothing; an import line may also be a bare pamphlet (text, tags, ...)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Connection, insert, select

from memory import tables as t
from memory.errors import ImportValidationError, MemoryStoreError
from memory.schema import ExportRecord, PamphletIn

if TYPE_CHECKING:
    from memory.store import MemoryStore

BATCH = 1000


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0  # lines whose content already exists in the store (skipped)
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    renumbered: dict[int, int] = field(default_factory=dict)  # exported id -> new id (id was taken)
    ids: list[int] = field(default_factory=list)


def export_jsonl(store: MemoryStore, path: Path, include_deleted: bool = False) -> int:
    """Write every (live, or all) pamphlet as one JSON line; atomic (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    count, offset = 0, 0
    with open(tmp, "w", encoding="utf-8") as handle:
        while True:
            page = store.list(include_deleted=include_deleted, limit=BATCH, offset=offset)
            if not page:
                break
            ids = [p.id for p in page]
            histories, uses = store.histories(ids), store.uses_of(ids)
            for pamphlet in page:
                record = ExportRecord(**pamphlet.model_dump(), history=histories[pamphlet.id], uses=uses[pamphlet.id])
                handle.write(record.model_dump_json() + "\n")
                count += 1
            offset += len(page)
    os.replace(tmp, path)
    return count


def _parse_line(number: int, line: str) -> tuple[PamphletIn | ExportRecord | None, str | None]:
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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}" for err in exc.errors()
        )
        return None, problems


def read_jsonl(path: Path) -> tuple[list[tuple[int, PamphletIn | ExportRecord]], list[tuple[int, str]]]:
    """Every line validated: (line number, record) pairs and (line number, problem) pairs."""
    if not path.is_file():
        raise MemoryStoreError(f"import file {path} does not exist")
    records, problems = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record, problem = _parse_line(number, line)
            if problem is not None:
                problems.append((number, problem))
            else:
                records.append((number, record))
    return records, problems


def import_jsonl(
    store: MemoryStore,
    path: Path,
    skip_invalid: bool = False,
    changed_by: str = "import",
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate the whole file first: a bad line means nothing is imported unless ``skip_invalid``.
    Then embed with the store's embedder and insert in transactions of 1,000 lines."""
    records, problems = read_jsonl(path)
    if problems and not skip_invalid:
        raise ImportValidationError(str(path), problems)
    if not records and not problems:
        raise MemoryStoreError(f"import file {path} holds no pamphlets")
    report = ImportReport(skipped_lines=problems)
    with store.engine.connect() as conn:
        taken = set(conn.execute(select(t.pamphlets.c.id)).scalars())
        existing = set(conn.execute(select(t.pamphlets.c.content_hash).where(t.pamphlets.c.deleted.is_(False))).scalars())
    fresh = []
    for _, record in records:
        digest = PamphletIn.model_validate(record.model_dump(include=set(PamphletIn.model_fields))).compute_hash()
        if digest in existing and not getattr(record, "deleted", False):
            report.duplicates += 1
            continue
        existing.add(digest)
        fresh.append(record)
    for start in range(0, len(fresh), BATCH):
        batch = fresh[start : start + BATCH]
        items = [PamphletIn.model_validate(r.model_dump(include=set(PamphletIn.model_fields))) for r in batch]
        vectors = store._embed([item.text for item in items])
        keep = [_kept_fields(r, taken) for r in batch]
        ids = store._insert(items, vectors, changed_by, keep=keep, after=_history_writer(batch, changed_by))
        for record, new_id in zip(batch, ids):
            if isinstance(record, ExportRecord) and record.id != new_id:
                report.renumbered[record.id] = new_id
        report.ids.extend(ids)
        report.imported += len(ids)
        if progress is not None:
            progress(len(batch))
    return report


def _kept_fields(record: PamphletIn | ExportRecord, taken: set[int]) -> dict[str, Any]:
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


def _history_writer(batch: list[PamphletIn | ExportRecord], changed_by: str) -> Callable[[Connection, list[int]], None]:
    def write(conn: Connection, ids: list[int]) -> None:
        versions, uses = [], []
        for record, new_id in zip(batch, ids):
            if isinstance(record, ExportRecord) and record.history:
                versions += [
                    {**v.model_dump(exclude={"pamphlet_id"}), "pamphlet_id": new_id} for v in record.history
                ]
                uses += [
                    {"pamphlet_id": new_id, "episode_id": u["episode_id"], "reward": u["reward"], "used_at": _parse_time(u["used_at"])}
                    for u in record.uses
                ]
            else:
                versions.append(
                    {"pamphlet_id": new_id, "version": getattr(record, "version", 1), "change": "imported",
                     "changed_by": changed_by, "changed_at": datetime.now(timezone.utc), "snapshot": record.model_dump(mode="json", include=set(PamphletIn.model_fields))}
                )
        if versions:
            conn.execute(insert(t.pamphlet_versions), versions)
        if uses:
            conn.execute(insert(t.pamphlet_uses), uses)

    return write


def _parse_time(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value
