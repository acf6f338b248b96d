"""Deferral policies: who answers an item. Each sees a level's class probabilities and the past only.

Every policy has one cost knob that moves the LLM share monotonically from (nearly) all items to none:
`ThresholdPolicy(t)`: defer while the level's top probability is under t (t = 1: everything goes on).
`OCLPolicy(mu)` (after Nie et al., Online Cascade Learning, 2024): per level a calibration curve
estimates q = P(the level's answer differs from the LLM's) from how unsure the level is of an item
(its rank among the level's recent items); it learns on every LLM-labelled item, and the level defers
the items whose q exceeds mu times the relative cost of the next level (mu = 0: defer everything;
mu at or above the chance of error, 1 - 1/classes, against the LLM: only the warm-up and a small
exploration share are deferred). Between the two the share falls steadily as mu rises.
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
from sklearn.isotonic import isotonic_regression


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


class DisagreementCurve:
    """q = P(the level's answer differs from the LLM's) as a function of how unsure the level is of an
    item, measured as the item's rank among the level's recent items (a rank keeps its meaning while
    the level sharpens; raw probabilities do not). The curve is a histogram over rank bins, finer at
    the unsure end, of the LLM-labelled items with fading counts, made non-decreasing (scikit-learn's
    isotonic regression). Within a bin the policy's choice of labelled items depends on the bin only,
    plus random exploration, so each bin's error rate is estimated without the selection bias a parametric model
    fitted on deferred items has (it underestimated q at the unsure end once few items were deferred,
    and the share then collapsed to the exploration floor)."""

    EDGES = np.array([0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.91, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0])

    def __init__(self, window: int = 2000, decay: float = 0.995) -> None:
        if window < 1 or not 0.0 < decay <= 1.0:
            raise ValueError(f"need window >= 1 and 0 < decay <= 1, got window={window}, decay={decay}")
        self.window = window
        self.decay = decay
        self.centres_ = (self.EDGES[:-1] + self.EDGES[1:]) / 2
        self.recent_: deque[float] = deque(maxlen=window)  # uncertainties of the level's recent items
        self.unranked_ = np.zeros(0)  # the batch being decided: joins `recent_` when the next one comes
        self.seen_: np.ndarray | None = None  # per bin: fading count of labelled items and of disagreements
        self.wrong_: np.ndarray | None = None

    def ranks(self, probs: np.ndarray) -> np.ndarray:
        """Where each item's unsureness falls among the recent items (0 = surest, 1 = least sure)."""
        unsure = uncertainty(probs)
        if not self.recent_:
            return np.full(len(unsure), 0.5)
        ordered = np.sort(np.fromiter(self.recent_, float))
        below, up_to = np.searchsorted(ordered, unsure, "left"), np.searchsorted(ordered, unsure, "right")
        return (below + up_to) / (2.0 * len(ordered))

    def observe(self, probs: np.ndarray) -> None:
        """A new batch is being decided: the previous one joins the reference items."""
        self.recent_.extend(self.unranked_.tolist())
        self.unranked_ = uncertainty(probs)

    def _prior(self, classes: int) -> np.ndarray:
        """Before any label: from certain agreement at rank 0 to chance at rank 1."""
        return self.centres_ * (1.0 - 1.0 / max(2, classes))

    def curve(self, classes: int = 2) -> np.ndarray:
        """q at each bin's centre, non-decreasing in rank."""
        if self.seen_ is None or self.wrong_ is None:
            return self._prior(classes)
        return isotonic_regression(self.wrong_ / self.seen_, sample_weight=self.seen_)

    def q(self, probs: np.ndarray) -> np.ndarray:
        return np.interp(self.ranks(probs), self.centres_, self.curve(probs.shape[1]))

    def crossing(self, limit: float, classes: int = 2) -> float:
        """The lowest rank whose q exceeds `limit` (1.0: none does)."""
        grid = np.linspace(0.0, 1.0, 401)
        above = np.flatnonzero(np.interp(grid, self.centres_, self.curve(classes)) > limit)
        return float(grid[above[0]]) if len(above) else 1.0

    def learn(self, probs: np.ndarray, wrong: np.ndarray) -> None:
        if self.seen_ is None or self.wrong_ is None:  # the prior is worth one labelled item per bin
            self.seen_, self.wrong_ = np.ones(len(self.centres_)), self._prior(probs.shape[1])
        seen, counted = self.seen_, self.wrong_
        bins = np.clip(np.searchsorted(self.EDGES, self.ranks(probs), "right") - 1, 0, len(self.centres_) - 1)
        for b, miss in zip(bins.tolist(), np.asarray(wrong, dtype=float).tolist()):
            seen[b] = self.decay * seen[b] + 1.0
            counted[b] = self.decay * counted[b] + miss


class OCLPolicy:
    """Learned, cost-aware deferral per level: defer the items whose q exceeds mu * (next level's cost /
    LLM cost). The rank where the curve crosses that limit is followed smoothly (a moving average with
    rate `follow`), so one noisy update of the curve does not swing the share."""

    name = "ocl"

    def __init__(self, levels: int, costs: Sequence[float], mu: float = 0.1, warmup: int = 100, explore: float = 0.05,
                 explore_half_life: int = 500, min_explore: float = 0.005, follow: float = 0.05, window: int = 2000,
                 decay: float = 0.995, seed: int = 0) -> None:
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got {mu}")
        if len(costs) != levels + 1:
            raise ValueError(f"give one cost per level and the LLM's last: {levels + 1} costs, got {len(costs)}")
        if not 0.0 <= min_explore <= explore <= 1.0 or warmup < 0:
            raise ValueError("need 0 <= min_explore <= explore <= 1 and warmup >= 0")
        if not 0.0 < follow <= 1.0:
            raise ValueError(f"follow must be in (0, 1], got {follow}")
        self.mu = mu
        self.warmup = warmup
        self.explore = explore
        self.explore_half_life = explore_half_life
        self.min_explore = min_explore
        self.follow = follow
        self.curves = [DisagreementCurve(window, decay) for _ in range(levels)]
        # what deferring from level i costs: the next level's price, relative to the LLM's
        self.defer_cost = [costs[i + 1] / costs[-1] for i in range(levels)]
        self.labels_seen = [0] * levels
        self.cut_: list[float | None] = [None] * levels  # the followed rank above which a level defers
        self.boosted = 0.0
        self._rng = random.Random(f"ocl:{seed}")

    def explore_share(self, level: int) -> float:
        if self.mu <= 0:
            return 0.0
        fade = 0.5 ** (self.labels_seen[level] / self.explore_half_life)
        return max(self.min_explore, self.explore * fade) + self.boosted

    def defer(self, level: int, probs: np.ndarray, position: int) -> np.ndarray:
        curve = self.curves[level]
        curve.observe(probs)
        if position < self.warmup or self.mu <= 0:
            return np.ones(len(probs), dtype=bool)
        crossing = curve.crossing(self.mu * self.defer_cost[level], probs.shape[1])
        previous = self.cut_[level]
        cut = crossing if previous is None else (1.0 - self.follow) * previous + self.follow * crossing
        self.cut_[level] = cut
        learned = curve.ranks(probs) > cut if cut < 1.0 else np.zeros(len(probs), dtype=bool)
        share = self.explore_share(level)
        explored = np.array([self._rng.random() < share for _ in range(len(probs))], dtype=bool)
        return learned | explored

    def learn(self, level: int, probs: np.ndarray, wrong: np.ndarray, position: int) -> None:
        if len(probs):
            self.curves[level].learn(probs, wrong)
            self.labels_seen[level] += len(probs)

    def expected_disagreement(self, level: int, probs: np.ndarray) -> np.ndarray:
        """q of each item, from the level's curve as it stands (before it learns from them)."""
        return self.curves[level].q(probs)

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
