"""Lane choice: a contextual bandit that pays for supervision only where memory is not yet trusted.

Lanes, cheapest first: auto (student alone), paired (teacher validates the answer), coach (teacher
reviews the plan and validates), escalate (teacher does the task). The context is how much the
memory can be trusted for this task: no plan retrieved, an untested plan, a plan with a weak or a
good track record. Per (context, lane) the bandit keeps the mean of reward - lambda * cost and picks
the best, exploring lanes it has tried little; a context it has never seen starts in `paired`.

Concurrent episodes share one bandit (its methods hold a lock), or each worker gets a `snapshot`.
With a `key` per choice (the episode id), the exploration draw is seeded by the key, so a choice
does not depend on how many choices other episodes made before it (their order varies when episodes
run at once). Statistics can be loaded from totals (`absorb`), e.g. those a memory store kept.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Lane = Literal["auto", "paired", "coach", "escalate"]
LANES: tuple[Lane, ...] = ("auto", "paired", "coach", "escalate")
Context = Literal["no_plan", "untested_plan", "weak_plan", "good_plan"]
CONTEXTS: tuple[Context, ...] = ("no_plan", "untested_plan", "weak_plan", "good_plan")


def memory_context(has_plan: bool, uses: int, mean_reward: float | None, good: float = 0.8) -> Context:
    """Bucket memory confidence: is there a plan, has it been used, how well did it do."""
    if not has_plan:
        return "no_plan"
    if uses == 0 or mean_reward is None:
        return "untested_plan"
    return "good_plan" if mean_reward >= good else "weak_plan"


@dataclass
class ArmStats:
    n: int = 0
    utility_sum: float = 0.0
    reward_sum: float = 0.0
    cost_sum: float = 0.0

    @property
    def utility(self) -> float:
        return self.utility_sum / self.n if self.n else 0.0


@dataclass
class LaneBandit:
    """Choose a lane per task to maximise reward - lam * cost (dollars), learning per memory context."""

    lam: float = 5.0
    explore: float = 0.1
    cold_start: Lane = "paired"
    forced: Lane | None = None
    seed: int = 0
    stats_: dict[str, dict[str, ArmStats]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lam < 0 or not math.isfinite(self.lam):
            raise ValueError(f"lambda must be a finite number >= 0, got {self.lam}")
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"explore must be in [0, 1], got {self.explore}")
        for lane in (self.cold_start, self.forced):
            if lane is not None and lane not in LANES:
                raise ValueError(f"unknown lane {lane!r}; choose one of {', '.join(LANES)}")
        self._rng = random.Random(f"lanes:{self.seed}")
        self._lock = threading.Lock()

    def choose(self, context: str, key: str | None = None) -> Lane:
        """The lane for a task in `context`; with `key` (e.g. the episode id) the exploration draw is the key's own."""
        if self.forced:
            return self.forced
        with self._lock:
            arms = self.stats_.get(context)
            if not arms:
                return self.cold_start
            rng = random.Random(f"lanes:{self.seed}:{key}") if key is not None else self._rng
            tried = {lane: s for lane, s in arms.items() if s.n}
            visits = sum(s.n for s in tried.values())
            # exploration fades as the context is visited; untried lanes are what it explores first
            if rng.random() < self.explore / math.sqrt(visits):
                untried = [lane for lane in LANES if lane not in tried]
                return rng.choice(untried or list(LANES))
            return max((lane for lane in LANES if lane in tried), key=lambda lane: (tried[lane].utility, -LANES.index(lane)))

    def update(self, context: str, lane: str, reward: float, cost: float) -> None:
        with self._lock:
            self._add(context, lane, 1, reward, cost)

    def _add(self, context: str, lane: str, n: int, reward_sum: float, cost_sum: float) -> None:
        arm = self.stats_.setdefault(context, {}).setdefault(lane, ArmStats())
        arm.n += n
        arm.reward_sum += reward_sum
        arm.cost_sum += cost_sum
        arm.utility_sum += reward_sum - self.lam * cost_sum

    def absorb(self, totals: Iterable[tuple[str, str, int, float, float]]) -> None:
        """Add (context, lane, n, reward sum, cost sum) totals, e.g. what earlier runs recorded."""
        with self._lock:
            for context, lane, n, reward_sum, cost_sum in totals:
                if lane not in LANES:
                    raise ValueError(f"unknown lane {lane!r} in the bandit's totals; choose one of {', '.join(LANES)}")
                self._add(context, lane, int(n), float(reward_sum), float(cost_sum))

    def totals(self) -> list[tuple[str, str, int, float, float]]:
        """The statistics as (context, lane, n, reward sum, cost sum): what `absorb` takes."""
        with self._lock:
            return [(c, lane, s.n, s.reward_sum, s.cost_sum) for c, arms in self.stats_.items() for lane, s in arms.items() if s.n]

    def snapshot(self) -> LaneBandit:
        """An independent copy with the same settings and statistics (for a worker elsewhere)."""
        copy = LaneBandit(lam=self.lam, explore=self.explore, cold_start=self.cold_start, forced=self.forced, seed=self.seed)
        copy.absorb(self.totals())
        return copy

    def to_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        with self._lock:
            return {
                context: {lane: {"n": s.n, "utility": s.utility, "mean_reward": s.reward_sum / s.n, "mean_cost": s.cost_sum / s.n} for lane, s in arms.items() if s.n}
                for context, arms in self.stats_.items()
            }
