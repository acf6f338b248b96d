"""Near-duplicate grouping: pamphlets whose embeddings are closer than a cosine threshold fold into
the oldest of them. Pure: the store supplies the rows and a neighbour search, and merges the groups."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

Neighbours = Callable[[np.ndarray, str], list[tuple[int, float]]]  # (vector, audience) -> (id, cosine) above the threshold


@dataclass(frozen=True)
class MergeGroup:
    survivor: int
    merged: tuple[int, ...]
    scores: tuple[float, ...]  # similarity of each merged pamphlet to the survivor


def check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")


def group_duplicates(rows: Iterable[tuple[int, str, np.ndarray]], neighbours: Neighbours) -> list[MergeGroup]:
    """Greedy by age over (id, audience, vector) rows in id order: each pamphlet absorbs younger
    same-audience pamphlets that ``neighbours`` finds, unless an older one took them first."""
    assigned: set[int] = set()
    groups = []
    for pamphlet_id, audience, vector in rows:
        if pamphlet_id in assigned:
            continue
        members = [(i, score) for i, score in neighbours(vector, audience) if i > pamphlet_id and i not in assigned]
        if members:
            assigned.update(i for i, _ in members)
            groups.append(MergeGroup(pamphlet_id, tuple(i for i, _ in members), tuple(s for _, s in members)))
    return groups
