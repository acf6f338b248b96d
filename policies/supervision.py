"""Lane choice: a contextual bandit that pays for supervision only where memory is not yet trusted.

Lanes, cheapest first: auto (student alone), paired (teacher validates the answer), coach (teacher
reviews the plan and validates), escalate (teacher does the task). The context is how much the
memory can be trusted for this task: no plan retrieved, an untested plan, a plan with a weak or a
good track record. Per (context, lane) the bandit keeps the mean of reward - lambda * cost and picks
the best, exploring lanes it has tried little; a context it has never seen starts in `paired`.
"""

from __future__ import annotations

import math
import random
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

    def choose(self, context: str) -> Lane:
        if self.forced:
            return self.forced
        arms = self.stats_.get(context)
        if not arms:
            return self.cold_start
        tried = {lane: s for lane, s in arms.items() if s.n}
        visits = sum(s.n for s in tried.values())
        # exploration fades as the context is visited; untried lanes are what it explores first
        if self._rng.random() < self.explore / math.sqrt(visits):
            untried = [lane for lane in LANES if lane not in tried]
            return self._rng.choice(untried or list(LANES))
        return max((lane for lane in LANES if lane in tried), key=lambda lane: (tried[lane].utility, -LANES.index(lane)))

    def update(self, context: str, lane: str, reward: float, cost: float) -> None:
        arm = self.stats_.setdefault(context, {}).setdefault(lane, ArmStats())
        arm.n += 1
        arm.reward_sum += reward
        arm.cost_sum += cost
        arm.utility_sum += reward - self.lam * cost

    def to_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        return {
            context: {lane: {"n": s.n, "utility": s.utility, "mean_reward": s.reward_sum / s.n, "mean_cost": s.cost_sum / s.n} for lane, s in arms.items() if s.n}
            for context, arms in self.stats_.items()
        }
