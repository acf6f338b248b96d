"""Writing what worked into memory, behind gates: no ground truth, not too long, no duplicates, prune losers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from atlas.agents.base import Episode, Lesson
from atlas.config import AgentSettings
from memory.errors import ConcurrentEdit
from memory.schema import PamphletIn, Provenance
from memory.store import MemoryStore

T = TypeVar("T")
DUPLICATE_SCORE = 0.97  # a plan with the same structure this close is the same lesson
NEAR_COPY_SCORE = 0.9  # a text note this close, for the same cue, reinforces the existing one instead of adding a near-copy

# Concrete identifiers no general lesson needs: addresses, hashes, ids, SIDs, mail addresses, URLs, dates, times.
IDENTIFIERS = {
    "an IPv4 address": re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
    "an IPv6 address": re.compile(r"\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b", re.IGNORECASE),
    "a hash": re.compile(r"\b[0-9a-f]{32,}\b", re.IGNORECASE),
    "a GUID": re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE),
    "a SID": re.compile(r"\bS-1-\d+(?:-\d+){2,}\b", re.IGNORECASE),
    "a mail address": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "a URL": re.compile(r"\bhttps?://\S+", re.IGNORECASE),
    "a date": re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b"),
    "a time": re.compile(r"\b\d{1,2}:\d{2}:\d{2}\b"),
}


def concrete_identifier(text: str) -> str | None:
    """What kind of world-specific value the text holds, if any (None: it reads as general)."""
    for kind, pattern in IDENTIFIERS.items():
        if pattern.search(text):
            return kind
    return None


@dataclass(frozen=True)
class Outcome:
    written: int | None = None  # a new pamphlet
    merged_into: int | None = None  # an existing pamphlet said the same: it was reinforced instead
    rejected: str | None = None  # why the lesson was not stored


EDIT_RETRIES = 8  # concurrent episodes may edit one pamphlet at once: the loser reads it again and retries


def _retrying(write: Callable[[], T]) -> T:
    """Run a read-then-write again when another writer changed the pamphlet in between (never overwrite it)."""
    for _ in range(EDIT_RETRIES - 1):
        try:
            return write()
        except ConcurrentEdit:
            continue
    return write()


def store_lesson(
    store: MemoryStore, lesson: Lesson, episode: Episode, settings: AgentSettings, episode_id: str, author: str, scope: tuple[str, ...] = ()
) -> Outcome:
    """See `_store_lesson`; retried when a concurrent episode edits the same pamphlet meanwhile."""
    return _retrying(lambda: _store_lesson(store, lesson, episode, settings, episode_id, author, scope))


def _store_lesson(
    store: MemoryStore, lesson: Lesson, episode: Episode, settings: AgentSettings, episode_id: str, author: str, scope: tuple[str, ...] = ()
) -> Outcome:
    """Apply the gates, then add the lesson (tagged with the run's scope) or fold it into the pamphlet it duplicates.

    Idempotent per episode: storing the same lesson again for the same episode (a graph node replayed
    after a crash) finds the pamphlet that already lists the episode and writes nothing."""
    tags = list(dict.fromkeys([*lesson.tags, *scope]))
    blob = lesson.text + " " + json.dumps(lesson.plan or {}, sort_keys=True)
    if episode.reveals_ground_truth(blob):
        return Outcome(rejected="contains a value of this incident (the answer, a solution value or another entity)")
    found = concrete_identifier(lesson.text) if (lesson.plan or {}).get("kind") == "note" else None
    if found:
        return Outcome(rejected=f"not general: contains {found}")
    if len(lesson.text) > settings.max_pamphlet_chars:
        return Outcome(rejected=f"longer than {settings.max_pamphlet_chars} characters")
    for hit in store.search(lesson.text, k=3, audience="student", tags=tags):
        notes = (hit.pamphlet.plan or {}).get("kind") == (lesson.plan or {}).get("kind") == "note"
        same_outcome = (hit.pamphlet.plan or {}).get("outcome", "worked") == (lesson.plan or {}).get("outcome", "worked")
        same_plan = (notes and same_outcome) or (hit.pamphlet.plan or None) == (lesson.plan or None)  # a note is its text
        same_cue = " ".join((hit.pamphlet.cue or "").casefold().split()) == " ".join(lesson.cue.casefold().split())
        near = hit.score >= DUPLICATE_SCORE or (notes and same_cue and hit.score >= NEAR_COPY_SCORE)
        if same_plan and (near or hit.pamphlet.text == lesson.text):
            episodes = hit.pamphlet.provenance.episode_ids
            if episode_id in episodes:  # this episode's lesson is already there (a replayed node): nothing twice
                created = episodes[:1] == [episode_id] and hit.pamphlet.provenance.source == "distill"
                return Outcome(written=hit.pamphlet.id) if created else Outcome(merged_into=hit.pamphlet.id)
            provenance = hit.pamphlet.provenance.model_copy(update={"episode_ids": [*hit.pamphlet.provenance.episode_ids, episode_id][-50:]})
            store.update(hit.pamphlet.id, provenance=provenance.model_dump(), changed_by=author, change="reinforced")
            return Outcome(merged_into=hit.pamphlet.id)
    added = store.add(
        PamphletIn(
            text=lesson.text,
            plan=lesson.plan,
            audience="student",
            tags=tags,
            cue=lesson.cue,
            provenance=Provenance(episode_ids=[episode_id], model=author, source="distill"),
        ),
        changed_by=author,
    )
    return Outcome(written=added.id)


def prune(store: MemoryStore, ids: list[int], settings: AgentSettings, author: str) -> list[int]:
    """Soft-delete used pamphlets whose track record shows no benefit; returns the ids removed."""
    removed = []
    for pamphlet_id, track in store.track_records(ids).items():
        if track.uses >= settings.prune_after_uses and (track.mean_reward or 0.0) < settings.prune_below:
            change = f"pruned: mean reward {track.mean_reward:.2f} over {track.uses} uses"
            _retrying(partial(store.delete, pamphlet_id, changed_by=author, change=change))
            removed.append(pamphlet_id)
    return removed
