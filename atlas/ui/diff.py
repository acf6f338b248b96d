"""What changed between two states of a pamphlet, field by field and word by word, for the edit
preview and the history. Plain data: the templates mark insertions and deletions (escaped)."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

SHOWN_FIELDS = ("text", "audience", "tags", "cue", "plan", "provenance", "deleted")
_TOKENS = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True)
class FieldChange:
    """One field's change: runs of ("=", "-", "+", text) tokens to show in order."""

    field: str
    before: str
    after: str
    runs: list[tuple[str, str]]


def as_text(field: str, value: Any) -> str:
    """A field value the way a person reads it in a diff."""
    if field == "tags":
        return ", ".join(value or [])
    if field in ("plan", "provenance"):
        return "" if value in (None, {}) else json.dumps(value, indent=1, sort_keys=True)
    if field == "deleted":
        return "deleted" if value else "live"
    return "" if value is None else str(value)


def word_runs(before: str, after: str) -> list[tuple[str, str]]:
    """Word-level diff: whitespace is kept as its own token so the text reads back unchanged."""
    a, b = _TOKENS.findall(before), _TOKENS.findall(after)
    runs: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            runs.append(("=", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            runs.append(("-", "".join(a[i1:i2])))
        if j2 > j1:
            runs.append(("+", "".join(b[j1:j2])))
    return runs


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[FieldChange]:
    """Fields that differ between two snapshots (``before`` None: everything is new)."""
    out = []
    for field in SHOWN_FIELDS:
        if field not in after and (before is None or field not in before):
            continue
        old = "" if before is None else as_text(field, before.get(field))
        new = as_text(field, after.get(field))
        if before is None and field == "deleted" and not after.get(field):
            continue
        if old != new:
            out.append(FieldChange(field, old, new, word_runs(old, new)))
    return out
