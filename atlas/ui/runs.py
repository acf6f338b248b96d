"""Run folders on disk: where they are, what figures their results.json holds, which files they have.

A run folder is any folder with a ``results.json`` or a ``report.md`` (what every run command
writes). Paths shown to and taken from the browser are relative to one root folder; anything that
resolves outside it is refused, so the page can never serve other files of the machine."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

MARKERS = ("results.json", "report.md")
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "indexes", "models", "bench-store"})
MAX_DEPTH = 4
MAX_RUNS = 500
MAX_FIGURES = 300
TEXT_SUFFIXES = {".md": "text/plain", ".json": "application/json", ".jsonl": "text/plain", ".txt": "text/plain", ".csv": "text/plain"}
FILE_TYPES = {".png": "image/png", **TEXT_SUFFIXES}
MAX_TEXT_BYTES = 2_000_000


class RunPathError(LookupError):
    """A path that is not a run folder or file under the root."""


@dataclass(frozen=True)
class RunFolder:
    path: str  # relative to the root, "." for the root itself
    modified: datetime
    has_report: bool
    has_results: bool
    plots: list[str] = field(default_factory=list)
    files: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes) of everything else shown


def _is_run(folder: Path) -> bool:
    return any((folder / marker).is_file() for marker in MARKERS)


def _describe(root: Path, folder: Path) -> RunFolder:
    entries = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in FILE_TYPES)
    modified = max((p.stat().st_mtime for p in entries), default=folder.stat().st_mtime)
    relative = folder.relative_to(root).as_posix() or "."
    return RunFolder(
        path=relative,
        modified=datetime.fromtimestamp(modified, tz=UTC),
        has_report=(folder / "report.md").is_file(),
        has_results=(folder / "results.json").is_file(),
        plots=[p.name for p in entries if p.suffix == ".png"],
        files=[(p.name, p.stat().st_size) for p in entries if p.suffix != ".png"],
    )


def find_runs(root: Path) -> list[RunFolder]:
    """Run folders under ``root`` (hidden and cache folders skipped), newest first."""
    root = root.resolve()
    if not root.is_dir():
        return []
    found = []
    for current, dirs, _files in os.walk(root):
        here = Path(current)
        depth = len(here.relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS and depth < MAX_DEPTH)
        if _is_run(here):
            found.append(_describe(root, here))
            if len(found) >= MAX_RUNS:
                break
    return sorted(found, key=lambda r: (r.modified, r.path), reverse=True)


def resolve_inside(root: Path, relative: str) -> Path:
    """``root/relative`` if it stays inside ``root`` (after symlinks), else RunPathError."""
    base = root.resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise RunPathError(f"{relative!r} is not under the runs folder")
    return candidate


def open_run(root: Path, relative: str) -> RunFolder:
    folder = resolve_inside(root, relative)
    if not folder.is_dir() or not _is_run(folder):
        raise RunPathError(f"no run folder {relative!r} under {root} (a run folder has results.json or report.md)")
    return _describe(root.resolve(), folder)


def run_file(root: Path, relative: str) -> tuple[Path, str]:
    """A file the page may show: inside the root and of a known type; returns (path, media type)."""
    path = resolve_inside(root, relative)
    if not path.is_file() or path.suffix not in FILE_TYPES:
        raise RunPathError(f"no viewable file {relative!r} under the runs folder (shown: {', '.join(sorted(FILE_TYPES))})")
    return path, FILE_TYPES[path.suffix]


def read_text(path: Path) -> tuple[str, bool]:
    """The start of a text file and whether it was cut."""
    with path.open("rb") as handle:
        raw = handle.read(MAX_TEXT_BYTES + 1)
    return raw[:MAX_TEXT_BYTES].decode("utf-8", errors="replace"), len(raw) > MAX_TEXT_BYTES


def load_results(path: Path) -> tuple[Any, str | None]:
    """The parsed results.json, or None and why it could not be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} could not be read: {exc}"


def figures(results: Any, limit: int = MAX_FIGURES) -> list[tuple[str, str]]:
    """Flat (name, value) rows of the scalar figures in a results object: nested keys joined with
    dots, short lists of scalars kept whole, long lists summarised."""
    rows: list[tuple[str, str]] = []

    def walk(value: Any, name: str, depth: int) -> None:
        if len(rows) >= limit:
            return
        if isinstance(value, dict) and depth < 4:
            for key, child in value.items():
                walk(child, f"{name}.{key}" if name else str(key), depth + 1)
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        elif isinstance(value, (str, int, bool)) or value is None:
            rows.append((name, json.dumps(value) if not isinstance(value, str) else value))
        elif isinstance(value, list) and len(value) <= 10 and all(not isinstance(v, (dict, list)) for v in value):
            rows.append((name, json.dumps(value)))
        elif isinstance(value, list):
            rows.append((name, f"[{len(value)} items]"))
        else:
            rows.append((name, "{...}"))

    walk(results, "", 0)
    return rows
