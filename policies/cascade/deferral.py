"""Deferral policies: who answers an item. Each sees a level's class probabilities and the past only.

Every policy has one cost knob that moves the LLM share monotonically from (nearly) all items to none:
`ThresholdPolicy(t)`: defer while the level's top probability is under t (t = 1: everything goes on).
`OCLPolicy(mu)` (after Nie et al., Online Cascade Learning, 2024): per level an online logistic model
estimates q = P(the level's answer differs from the LLM's) from the level's probabilities and how many
labels it has learned from; it learns on every LLM-labelled item, and the level defers when the
expected error it would leave, q, exceeds mu times the relative cost of the next level (mu = 0: defer
everything; mu >= 1 against the LLM: only the warm-up and a small exploration share are deferred).
Exploration (a fading share of random deferrals) keeps q calibrated on items the level is sure of.
`BudgetPolicy(F)`: a hard cap on LLM calls (a share of the items seen, or a count per window) that holds
at every prefix; it spends the budget on the items the cascade is least sure of, with a cut that adapts.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence

import numpy as np


def top_and_entropy(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes = max(2, probs.shape[1])
    top = probs.max(axis=1)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1) / math.log(classes)
    return top, entropy


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - top probability, scaled to [0, 1] (1 = uniform over the classes)."""
    classes = max(2, probs.shape[1]) if probs.ndim == 2 and probs.shape[1] else 2
    return (1.0 - probs.max(axis=1)) * classes / (classes - 1)


class ThresholdPolicy:
    """Defer while a level's top class probability is below its threshold (one for all levels, or one each)."""

    name = "threshold"

    def __init__(self, thresholds: float | Sequence[float] = 0.8) -> None:
        values = [float(thresholds)] if isinstance(thresholds, (int, float)) else [float(t) for t in thresholds]
        if not values or not all(0.0 <= t <= 1.0 for t in values):
            raise ValueError(f"thresholds must be in [0, 1], got {thresholds!r}")
        self.thresholds = values

    def threshold(self, level: int) -> float:
        return self.thresholds[0] if len(self.thresholds) == 1 else self.thresholds[level]

    def defer(self, level: int, probs: np.ndarray, position: int) -> np.ndarray:
        threshold = self.threshold(level)
        if threshold >= 1.0:
            return np.ones(len(probs), dtype=bool)
        return probs.max(axis=1) < threshold

    def learn(self, level: int, probs: np.ndarray, wrong: np.ndarray, position: int) -> None:
        return None

    def admit(self, scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.ones(len(scores), dtype=bool)

    def boost(self, extra: float) -> None:
        return None


class DisagreementModel:
    """Online logistic regression for q = P(level answer != LLM answer) on [logit(1 - top), entropy,
    log labels seen, 1]. It starts as q = 1 - top (the level's own word) and corrects itself on every
    LLM-labelled item with AdaGrad steps."""

    def __init__(self, lr: float = 0.3) -> None:
        self.w_ = np.array([1.0, 0.0, 0.0, 0.0])
        self.g2_ = np.full(4, 1e-6)
        self.lr = lr

    @staticmethod
    def inputs(probs: np.ndarray, labels_seen: int) -> np.ndarray:
        top, entropy = top_and_entropy(probs)
        wrong = np.clip(1.0 - top, 1e-6, 1 - 1e-6)
        return np.column_stack([np.log(wrong / (1 - wrong)), entropy, np.full(len(probs), math.log1p(labels_seen) / 10), np.ones(len(probs))])

    def q(self, probs: np.ndarray, labels_seen: int) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.inputs(probs, labels_seen) @ self.w_, -30, 30)))

    def step(self, probs: np.ndarray, wrong: np.ndarray, labels_seen: int) -> None:
        x = self.inputs(probs, labels_seen)
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ self.w_, -30, 30)))
        gradient = x.T @ (p - wrong.astype(float)) / len(x)
        self.g2_ += gradient**2
        self.w_ -= self.lr * gradient / np.sqrt(self.g2_)


class OCLPolicy:
    """Learned, cost-aware deferral per level: defer when q > mu * (next level's cost / LLM cost)."""

    name = "ocl"

    def __init__(self, levels: int, costs: Sequence[float], mu: float = 0.1, warmup: int = 100, explore: float = 0.05,
                 explore_half_life: int = 500, min_explore: float = 0.005, lr: float = 0.3, seed: int = 0) -> None:
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got {mu}")
        if len(costs) != levels + 1:
            raise ValueError(f"give one cost per level and the LLM's last: {levels + 1} costs, got {len(costs)}")
        if not 0.0 <= min_explore <= explore <= 1.0 or warmup < 0:
            raise ValueError("need 0 <= min_explore <= explore <= 1 and warmup >= 0")
        self.mu = mu
        self.warmup = warmup
        self.explore = explore
        self.explore_half_life = explore_half_life
        self.min_explore = min_explore
        self.models = [DisagreementModel(lr) for _ in range(levels)]
        # what deferring from level i costs: the next level's price, relative to the LLM's
        self.defer_cost = [costs[i + 1] / costs[-1] for i in range(levels)]
        self.labels_seen = [0] * levels
        self.boosted = 0.0
        self._rng = random.Random(f"ocl:{seed}")

    def explore_share(self, level: int) -> float:
        if self.mu <= 0:
            return 0.0
        fade = 0.5 ** (self.labels_seen[level] / self.explore_half_life)
        return max(self.min_explore, self.explore * fade) + self.boosted

    def defer(self, level: int, probs: np.ndarray, position: int) -> np.ndarray:
        if position < self.warmup:
            return np.ones(len(probs), dtype=bool)
        learned = self.models[level].q(probs, self.labels_seen[level]) > self.mu * self.defer_cost[level]
        share = self.explore_share(level)
        explored = np.array([self._rng.random() < share for _ in range(len(probs))], dtype=bool)
        return learned | explored

    def learn(self, level: int, probs: np.ndarray, wrong: np.ndarray, position: int) -> None:
        if len(probs):
            self.models[level].step(probs, wrong, self.labels_seen[level])
            self.labels_seen[level] += len(probs)

    def admit(self, scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.ones(len(scores), dtype=bool)

    def boost(self, extra: float) -> None:
        """Drift: explore more for a while (the cascade lowers it again)."""
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

    def learn(self, level: int, probs: np.ndarray, wrong: np.ndarray, position: int) -> None:
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
