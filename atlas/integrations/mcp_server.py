"""`atlas memory mcp`: the learning memory as Model Context Protocol tools, for MCP-speaking
assistants and agents. The tools are the CLI's verbs (search, list, show, add, edit, delete,
restore, history) over the public ``MemoryStore`` API; bad input and store refusals come back as
tool errors carrying the CLI's own messages, and nothing is written when a call is refused."""

from __future__ import annotations

import functools
import ipaddress
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from atlas import __version__
from atlas.errors import AtlasError, ConfigError, user_message
from memory.errors import ConcurrentEdit
from memory.schema import Pamphlet
from memory.store import MemoryStore

CHANGED_BY = "mcp"
Audience = Literal["student", "teacher"]
F = TypeVar("F", bound=Callable[..., Any])
INSTRUCTIONS = (
    "The learning memory of an agent system: short reusable guidance (pamphlets) with an audience "
    "(student or teacher), scope tags, a cue, an optional structured plan, provenance, a track record "
    "and a version history. Search before adding; edit rather than duplicate; deletes are soft "
    "(restore brings a pamphlet back). Never store ground-truth answers in a pamphlet."
)


def require_loopback(host: str) -> str:
    """The MCP server has no authentication: it may listen on a loopback address only."""
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ConfigError(
        f"refusing to serve the memory over MCP on {host}: the MCP server has no authentication, so it "
        "listens on loopback only (127.0.0.1, ::1 or localhost). Use --transport stdio, or put an "
        "authenticating proxy in front of it."
    )


def pamphlet_json(pamphlet: Pamphlet) -> dict[str, Any]:
    return pamphlet.model_dump(mode="json", exclude={"content_hash"})


class MemoryTools:
    """The tool bodies: one store, one lock (the SDK runs sync tools in worker threads)."""

    def __init__(self, memory: MemoryStore) -> None:
        self.memory = memory
        self._lock = threading.Lock()

    def _guarded(self, fn: F) -> F:
        """Serialise store access and turn user errors into tool errors with the CLI's words."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    message = user_message(exc)
                    if message is None:
                        raise
                    raise ToolError(message) from None

        return wrapper  # type: ignore[return-value]

    def search_memory(
        self,
        query: Annotated[str, Field(min_length=1, description="text to search for")],
        k: Annotated[int, Field(ge=1, le=100, description="how many hits")] = 5,
        audience: Audience | None = None,
        tags: Annotated[list[str], Field(description="required tags (all must match)")] = [],  # noqa: B006
        min_score: Annotated[float | None, Field(description="cosine similarity floor")] = None,
    ) -> list[dict[str, Any]]:
        """Semantic search of the live pamphlets, best first; deleted pamphlets never appear."""
        hits = self.memory.search(query, k=k, audience=audience, tags=tags, min_score=min_score)
        return [{"score": round(h.score, 4), **pamphlet_json(h.pamphlet)} for h in hits]

    def list_pamphlets(
        self,
        audience: Audience | None = None,
        tags: list[str] = [],  # noqa: B006
        include_deleted: bool = False,
        limit: Annotated[int, Field(ge=1, le=1000)] = 50,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> list[dict[str, Any]]:
        """Pamphlets by id, filtered by audience and tags."""
        rows = self.memory.list(audience=audience, tags=tags, include_deleted=include_deleted, limit=limit, offset=offset)
        return [pamphlet_json(p) for p in rows]

    def show_pamphlet(self, pamphlet_id: int) -> dict[str, Any]:
        """One pamphlet in full, with its track record (uses, mean reward)."""
        pamphlet = self.memory.get(pamphlet_id)
        return {**pamphlet_json(pamphlet), "track_record": self.memory.track_record(pamphlet_id).model_dump(mode="json")}

    def add_pamphlet(
        self,
        text: Annotated[str, Field(description="the guidance text (no ground-truth answers)")],
        audience: Audience = "student",
        tags: list[str] = [],  # noqa: B006
        cue: Annotated[str, Field(description="when this applies")] = "",
        plan: Annotated[dict[str, Any] | None, Field(description="structured plan (JSON object)")] = None,
    ) -> dict[str, Any]:
        """Add one pamphlet; returns it with its new id."""
        item = {"text": text, "audience": audience, "tags": tags, "cue": cue, "plan": plan, "provenance": {"source": CHANGED_BY}}
        return pamphlet_json(self.memory.add(item, changed_by=CHANGED_BY))

    def edit_pamphlet(
        self,
        pamphlet_id: int,
        text: Annotated[str | None, Field(description="new text (re-embeds)")] = None,
        audience: Audience | None = None,
        tags: Annotated[list[str] | None, Field(description="the new tag list (replaces the old one)")] = None,
        cue: str | None = None,
        plan: dict[str, Any] | None = None,
        clear_plan: Annotated[bool, Field(description="remove the plan")] = False,
        expected_version: Annotated[int | None, Field(description="refuse the edit unless the pamphlet is still at this version")] = None,
    ) -> dict[str, Any]:
        """Change fields of a live pamphlet; a new version is kept in its history."""
        if plan is not None and clear_plan:
            raise AtlasError("pass either plan or clear_plan, not both")
        current = self.memory.get(pamphlet_id)
        if expected_version is not None and current.version != expected_version:
            raise ConcurrentEdit(
                f"pamphlet {pamphlet_id} changed while this edit was being made (it is no longer version "
                f"{expected_version} but {current.version}); nothing was written: read it again and retry"
            )
        changes: dict[str, Any] = {k: v for k, v in (("text", text), ("audience", audience), ("tags", tags), ("cue", cue)) if v is not None}
        if plan is not None or clear_plan:
            changes["plan"] = plan
        updated = self.memory.update(pamphlet_id, changed_by=CHANGED_BY, **changes)
        note = "nothing changed" if updated.version == current.version else f"pamphlet {pamphlet_id} is now version {updated.version}"
        return {"message": note, "pamphlet": pamphlet_json(updated)}

    def delete_pamphlets(self, ids: Annotated[list[int], Field(min_length=1)]) -> str:
        """Soft-delete pamphlets: they leave search at once and can be restored."""
        for pamphlet_id in ids:  # every id must exist before any is deleted
            self.memory.get(pamphlet_id)
        for pamphlet_id in ids:
            self.memory.delete(pamphlet_id, changed_by=CHANGED_BY)
        return f"deleted {len(ids)} pamphlet(s); restore_pamphlets brings one back"

    def restore_pamphlets(self, ids: Annotated[list[int], Field(min_length=1)]) -> str:
        """Undo soft deletes."""
        for pamphlet_id in ids:
            self.memory.get(pamphlet_id)
        for pamphlet_id in ids:
            self.memory.restore(pamphlet_id, changed_by=CHANGED_BY)
        return f"restored {len(ids)} pamphlet(s)"

    def pamphlet_history(self, pamphlet_id: int) -> list[dict[str, Any]]:
        """Every version of a pamphlet, oldest first: what changed, who changed it, when, and the state after."""
        return [v.model_dump(mode="json") for v in self.memory.history(pamphlet_id)]


TOOL_NAMES = (
    "search_memory", "list_pamphlets", "show_pamphlet", "add_pamphlet", "edit_pamphlet",
    "delete_pamphlets", "restore_pamphlets", "pamphlet_history",
)


def build_server(memory: MemoryStore) -> MCPServer:
    """An MCP server whose tools read and edit ``memory``."""
    server = MCPServer("atlas-memory", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")
    tools = MemoryTools(memory)
    for name in TOOL_NAMES:
        server.tool(name=name)(tools._guarded(getattr(tools, name)))
    return server


def serve(memory: MemoryStore, transport: Literal["stdio", "http"], host: str, port: int) -> None:
    """Serve until the client hangs up (stdio) or Ctrl-C (HTTP, at http://HOST:PORT/mcp)."""
    server = build_server(memory)
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=require_loopback(host), port=port)
