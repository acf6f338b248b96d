"""How people type pamphlet fields: tags as a comma list, a plan as JSON. One parser, so the
CLI, the MCP server and the web page accept the same input and refuse it with the same words."""

from __future__ import annotations

import json
from typing import Any

from memory.errors import MemoryStoreError

EDITABLE = ("text", "audience", "tags", "cue", "plan")


def parse_tags(raw: str) -> list[str]:
    return [tag.strip() for tag in raw.split(",") if tag.strip()]


def parse_json(raw: str, name: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MemoryStoreError(f"{name} is not valid JSON ({exc.msg} at column {exc.colno})") from None


def parse_plan(raw: str, name: str = "plan") -> dict[str, Any] | None:
    """A plan typed as JSON text: blank means no plan; anything but an object is refused."""
    if not raw.strip():
        return None
    plan = parse_json(raw, name)
    if not isinstance(plan, dict):
        raise MemoryStoreError(f"{name} must be a JSON object such as {{\"hops\": [...]}}, got {type(plan).__name__}")
    return plan
