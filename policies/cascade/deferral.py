"""Deferral policies: who answers an item. Each sees only a level's class probabilities and the past.

`ThresholdPolicy` (the usual baseline): defer while the level's top probability is under its threshold.
`OCLPolicy` (online cascade learning, Nie et al. 2024): per level a small network maps the level's
class probabilities to a defer score; it learns online, on items the LLM labelled, to defer when the
level would be wrong (a calibration loss) while paying mu times the expected cost of deferring; early
items all go to the LLM (warm-up) and a fading share is deferred by force so that the policy keeps
seeing the level's mistakes.
`BudgetPolicy`: a hard cap on LLM calls (a fraction of the items seen, or a count per window) that is
never exceeded; it spends the budget on the items the cascade is least sure about, with a threshold
that adapts to the budget.
"""

from __future__ import annotations

import math
import random
from collections import deque

import numpy as np


def features(probs: np.ndarray) -> np.ndarray:
    """Top probability, margin to the runner-up, normalised entropy, and a bias term, each scaled
    to [0, 1] whatever the number of classes K (top: 0 at 1/K, 1 at certainty), so that a defer
    network means the same for 2 classes as for 7."""
    ordered = np.sort(probs, axis=1)[:, ::-1]
    k = max(2, probs.shape[1])
    top = (ordered[:, 0] - 1.0 / k) * k / (k - 1)
    margin = ordered[:, 0] - (ordered[:, 1] if probs.shape[1] > 1 else 0.0)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1) / math.log(max(2, probs.shape[1]))
    return np.column_stack([top, margin, entropy, np.ones(len(probs))])


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - top probability, scaled to [0, 1] (1 = uniform over the classes)."""
    classes = max(2, probs.shape[1]) if probs.ndim == 2 and probs.shape[1] else 2
    return (1.0 - probs.max(axis=1)) * classes / (classes - 1)


class ThresholdPolicy:
    """Defer while a level's top class probability is below its threshold."""

    name = "threshold"

    def __init__(self, thresholds: float | list[float] = 0.8) -> None:
        self.thresholds = thresholds

    def defer(self, level: int, probs: np.ndarray, position: int) -> np.ndarray:
        threshold = self.thresholds if isinstance(self.thresholds, float) else self.thresholds[level]
        return probs.max(axis=1) < threshold

    def learn(self, level: int, probs: np.ndarray, wrong: np.ndarray) -> None:
        return None

    def admit(self, scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.ones(len(scores), dtype=bool)

    def boost(self, factor: float) -> None:
        return None


class _DeferNet:
    """A one-hidden-layer network (numpy) from probability features to a defer score in (0, 1)."""

    def __init__(self, inputs: int, hidden: int, rng: np.random.Generator, lr: float) -> None:
        self.w1 = rng.normal(0, 0.5, (inputs, hidden))
        self.w2 = rng.normal(0, 0.5, hidden)
        self.b2 = 0.0
        self.lr = lr

    def score(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.tanh(x @ self.w1) @ self.w2 + self.b2)))

    def step(self, x: np.ndarray, target: np.ndarray, cost: float, mu: float) -> None:
        """Gradient step on BCE(score, target) + mu * cost * score, averaged over the rows."""
        h = np.tanh(x @ self.w1)
        s = 1.0 / (1.0 + np.exp(-(h @ self.w2 + self.b2)))
        dz = (s - target) + mu * cost * s * (1.0 - s)
        self.w2 -= self.lr * (h.T @ dz) / len(x)
        self.b2 -= self.lr * dz.mean()
        dh = np.outer(dz, self.w2) * (1.0 - h**2)
        self.w1 -= self.lr * (x.T @ dh) / len(x)


class OCLPolicy:
    """Learned deferral per level: defer when the net's score exceeds 1/2, after a warm-up."""

    name = "ocl"

    def __init__(self, levels: int, costs: list[float], mu: float = 0.5, warmup: int = 100, forced: float = 0.2,
                 forced_half_life: int = 200, min_forced: float = 0.01, hidden: int = 8, lr: float = 0.5, seed: int = 0) -> None:
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got {mu}")
        self.mu = mu
        self.warmup = warmup
        self.forced = forced
        self.forced_half_life = forced_half_life
        self.min_forced = min_forced
        generator = np.random.default_rng(seed)
        self.nets = [_DeferNet(4, hidden, generator, lr) for _ in range(levels)]
        total = sum(costs)
        # what deferring from level i costs at most: everything after it, relative to the whole cascade
        self.defer_cost = [sum(costs[i + 1:]) / total for i in range(levels)]
        self.labels_seen = [0] * levels
        self.boosted = 0.0
        self._rng = random.Random(f"ocl:{seed}")

    def forced_share(self, level: int) -> float:
        fade = 0.5 ** (self.labels_seen[level] / self.forced_half_life)
        return max(self.min_forced, self.forced * fade) + self.boosted

    def defer(self, level: int, probs: np.ndarray, position: int) -> np.ndarray:
        if position < self.warmup:
            return np.ones(len(probs), dtype=bool)
        learned = self.nets[level].score(features(probs)) > 0.5
        forced = np.array([self._rng.random() < self.forced_share(level) for _ in range(len(probs))])
        return learned | forced

    def learn(self, level: int, probs: np.ndarray, wrong: np.ndarray) -> None:
        if len(probs):
            self.nets[level].step(features(probs), wrong.astype(float), self.defer_cost[level], self.mu)
            self.labels_seen[level] += len(probs)

    def admit(self, scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.ones(len(scores), dtype=bool)

    def boost(self, extra: float) -> None:
        """Drift: defer more for a while (the runner lowers it again)."""
        self.boosted = extra


class BudgetPolicy:
    """At most `fraction` of the items seen so far (or `per_window` calls in any `window` consecutive
    items) reach the LLM, checked item by item in stream order, so the cap holds at every point.
    Every item is a candidate, with the uncertainty of the level that would otherwise answer it."""

    name = "budget"
    candidates_from_all_levels = True

    def __init__(self, fraction: float | None = 0.1, per_window: int | None = None, window: int = 100,
                 levels: int = 2, threshold: float = 0.8, memory: int = 500) -> None:
        if fraction is None and per_window is None:
            raise ValueError("give a budget: a fraction of items, or a count per window")
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError(f"budget fraction must be in [0, 1], got {fraction}")
        if per_window is not None and (per_window < 0 or window < 1):
            raise ValueError("per_window must be >= 0 and window >= 1")
        self.fraction = fraction
        self.per_window = per_window
        self.window = window
        self.inner = ThresholdPolicy(threshold)
        self.levels = levels
        self.calls = 0
        self._recent: deque[int] = deque()
        self._scores: deque[float] = deque(maxlen=memory)  # recent uncertainties, for the adaptive cut

    @property
    def share(self) -> float:
        return self.fraction if self.fraction is not None else (self.per_window or 0) / self.window

    def defer(self, level: int, probs: np.ndarray, position: int) -> np.ndarray:
        return self.inner.defer(level, probs, position) if level < self.levels - 1 else np.ones(len(probs), dtype=bool)

    def learn(self, level: int, probs: np.ndarray, wrong: np.ndarray) -> None:
        return None

    def boost(self, extra: float) -> None:
        return None

    def _room(self, position: int) -> bool:
        """May the item at `position` go to the LLM without breaking the cap at any prefix or window?"""
        if self.fraction is not None:
            return self.calls + 1 <= math.floor(self.fraction * (position + 1) + 1e-9)
        while self._recent and self._recent[0] <= position - self.window:
            self._recent.popleft()
        return len(self._recent) < (self.per_window or 0)

    def cut(self) -> float:
        """The uncertainty above which about `share` of recent items fall: where to spend the budget."""
        if self.share >= 1.0:
            return -1.0
        if not self._scores:
            return 0.0
        return float(np.quantile(np.fromiter(self._scores, float), 1.0 - self.share))

    def admit(self, scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Admit, in stream order, the items at least as uncertain as the cut, while the cap allows."""
        allowed = np.zeros(len(scores), dtype=bool)
        cut = self.cut()
        for n in np.argsort(positions, kind="stable"):
            if scores[n] >= cut and self._room(int(positions[n])):
                allowed[n] = True
                self.calls += 1
                self._recent.append(int(positions[n]))
        self._scores.extend(float(x) for x in scores)
        return allowed
