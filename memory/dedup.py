"""Near-duplicate merging: pamphlets whose embeddings are closer than a cosine threshold fold into
the oldest of them (see MemoryStore.merge), keeping provenance, uses and history."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from memory import tables as t
from memory.store import MemoryStore, _chunks


@dataclass(frozen=True)
class MergeGroup:
    survivor: int
    merged: tuple[int, ...]
    scores: tuple[float, ...]  # similarity of each merged pamphlet to the survivor


def find_duplicates(store: MemoryStore, threshold: float, neighbours: int = 10) -> list[MergeGroup]:
    """Greedy by age: each pamphlet absorbs younger same-audience pamphlets above ``threshold``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    assigned: set[int] = set()
    groups = []
    with store.engine.connect() as conn:
        for part in _chunks(store.live_ids()):
            rows = conn.execute(
                select(t.pamphlets.c.id, t.pamphlets.c.embedding, t.pamphlets.c.audience).where(t.pamphlets.c.id.in_(part))
            ).all()
            for row in sorted(rows, key=lambda r: r.id):
                if row.id in assigned:
                    continue
                vector = np.frombuffer(row.embedding, dtype=np.float32)
                hits = store.neighbours(vector, k=neighbours, audience=row.audience, min_score=threshold)
                members = [(i, score) for i, score in hits if i > row.id and i not in assigned]
                if members:
                    assigned.update(i for i, _ in members)
                    groups.append(MergeGroup(row.id, tuple(i for i, _ in members), tuple(s for _, s in members)))
    return groups


def dedup(store: MemoryStore, threshold: float = 0.92, dry_run: bool = False, changed_by: str = "dedup") -> list[MergeGroup]:
    groups = find_duplicates(store, threshold)
    if not dry_run:
        for group in groups:
            store.merge(group.survivor, group.merged, changed_by=changed_by)
    return groups
