"""What a pamphlet is: short reusable guidance an agent reads, with where it came from and how it did."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

Audience = Literal["student", "teacher"]
AUDIENCES: tuple[Audience, ...] = ("student", "teacher")
MAX_TEXT_CHARS = 20_000


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    episode_ids: list[str] = Field(default_factory=list)
    model: str | None = None
    source: str | None = None  # e.g. "distill", "cli", "import"
    merged_from: list[int] = Field(default_factory=list)  # ids folded into this one by dedup


class PamphletIn(BaseModel):
    """The fields a writer supplies. Ground-truth answers never belong here."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    plan: dict[str, Any] | None = None
    audience: Audience = "student"
    tags: list[str] = Field(default_factory=list)
    cue: str = ""
    provenance: Provenance = Field(default_factory=Provenance)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value

    @field_validator("text", "cue")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:  # PostgreSQL cannot store it in a text column; refuse it on every backend alike
            raise ValueError("must not contain NUL (\\x00) characters")
        return value

    @field_validator("tags")
    @classmethod
    def _clean_tags(cls, tags: list[str]) -> list[str]:
        cleaned = []
        for tag in tags:
            tag = tag.strip()
            if not tag or "," in tag or "\x00" in tag:
                raise ValueError(f"tag {tag!r} must be non-empty and contain no comma or NUL character")
            if tag not in cleaned:
                cleaned.append(tag)
        return cleaned

    def compute_hash(self) -> str:
        """Identity of the content (text, plan, audience): equal hashes are exact duplicates."""
        blob = json.dumps([self.text, self.plan, self.audience], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


class Pamphlet(PamphletIn):
    id: int
    version: int
    embedding_model: str
    embedding_dim: int
    content_hash: str
    created_at: datetime
    updated_at: datetime
    deleted: bool = False


class PamphletSummary(NamedTuple):
    """What a list of pamphlets shows and filters on (no plan, provenance or embedding), read
    without validation: the store validated every row when it wrote it. A named tuple: 10,000
    of them are built in a few milliseconds."""

    id: int
    text: str
    audience: str
    tags: list[str]
    cue: str
    version: int
    deleted: bool
    created_at: datetime
    updated_at: datetime


class PamphletVersion(BaseModel):
    """One entry of a pamphlet's history: the state after a change, who made it and why."""

    pamphlet_id: int
    version: int
    change: str  # created, edited, deleted, restored, merged
    changed_by: str
    changed_at: datetime
    snapshot: dict[str, Any]


class TrackRecord(BaseModel):
    uses: int = 0
    mean_reward: float | None = None
    last_used_at: datetime | None = None


class SearchHit(BaseModel):
    pamphlet: Pamphlet
    score: float


class ExportRecord(Pamphlet):
    """One JSONL line of an export: the pamphlet with its history and uses (lossless)."""

    history: list[PamphletVersion] = Field(default_factory=list)
    uses: list[dict[str, Any]] = Field(default_factory=list)
