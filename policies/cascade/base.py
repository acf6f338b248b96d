"""What every cascade level and deferral policy offers (typed protocols), and small shared helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Level(Protocol):
    """One model of the cascade. `predict_proba` must work before any fit (it then knows nothing) and
    never changes the level's state; `partial_fit` learns from LLM-labelled items only. Optional hooks the
    cascade calls when a level has them: `observe(texts)`, every text of a batch once it is answered
    (labelled or not: what a level may learn without labels), and `forget(keep)` (drop cached features)."""

    name: str
    cost: float  # declared units per item answered or passed through this level
    classes: int
    learns: bool  # False for the last level (the LLM), which is imitated, not trained

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    def partial_fit(self, texts: Sequence[str], labels: Sequence[int]) -> None: ...


@runtime_checkable
class DeferralPolicy(Protocol):
    """Decides who answers. `defer(level, probs, position)`: which items level `level` passes on;
    `admit(scores, positions)`: which of the items that reached the LLM may be sent to it (a budget);
    `learn(level, probs, wrong, position)`: feedback on LLM-labelled items (was the level wrong?);
    `boost(extra)`: defer more for a while (drift). Optional: `expected_disagreement(level, probs)`, the
    chance that the level's answer differs from the LLM's for each item, which the drift detector
    subtracts (without it, drift watches the raw disagreement)."""

    name: str

    def defer(self, level: int, probs: np.ndarray, position: int) -> np.ndarray: ...

    def admit(self, scores: np.ndarray, positions: np.ndarray) -> np.ndarray: ...

    def learn(self, level: int, probs: np.ndarray, wrong: np.ndarray, position: int) -> None: ...

    def boost(self, extra: float) -> None: ...


def uniform(n: int, classes: int) -> np.ndarray:
    return np.full((n, classes), 1.0 / classes)


def full_proba(probs: np.ndarray, known: np.ndarray, classes: int) -> np.ndarray:
    """Spread an estimator's probabilities over its `known` classes into all `classes` columns."""
    out = np.zeros((len(probs), classes))
    out[:, np.asarray(known, dtype=int)] = probs
    return out
