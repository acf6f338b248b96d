"""Lane choice: a contextual bandit that pays for supervision only where memory is not yet trusted.

Lanes, cheapest first: auto (student alone), paired (teacher validates the answer), coach (teacher
reviews the plan and validates), escalate (teacher does the task). The context is how much the
memory can be trusted for this task: no plan retrieved, an untested plan, a plan with a weak or a
good track record. Per (context, lane) the bandit keeps the mean of reward - lambda * cost and picks
the best, exploring lanes it has tried little; a context it has never seen starts in `paired`.

Concurrent episodes share one bandit (its methods hold a lock), or each worker gets a `snapshot`.
With a `key` per choice (the episode id), the exploration draw is seeded by the key, so a choice
does not depend on how many choices other episodes made before it (their order varies when episodes
run at once). A keyed choice stays *in flight* until `settle(key)`: in-flight choices count as visits
of their context and their lanes as tried, so N episodes started at once explore as N started one
after another would (rather than all taking the cold-start lane, or all exploring at the rate of one
visit). Choices in flight elsewhere (another process) are added with `expect`. Statistics can be
loaded from totals (`absorb`), e.g. those a memory store kept.
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
    in_flight_: dict[str, tuple[str, Lane]] = field(default_factory=dict)  # key -> (context, lane) chosen, outcome not in yet

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
            lane = self._choose(context, key)
            if key is not None:
                self.in_flight_[key] = (context, lane)
            return lane

    def _choose(self, context: str, key: str | None) -> Lane:
        tried = {lane: s for lane, s in self.stats_.get(context, {}).items() if s.n}
        waiting = [lane for other, (c, lane) in self.in_flight_.items() if c == context and other != key]
        visits = sum(s.n for s in tried.values()) + len(waiting)
        if not visits:
            return self.cold_start
        rng = random.Random(f"lanes:{self.seed}:{key}") if key is not None else self._rng
        # exploration fades as the context is visited; lanes neither tried nor in flight are what it explores first
        if rng.random() < self.explore / math.sqrt(visits):
            untried = [lane for lane in LANES if lane not in tried and lane not in waiting]
            return rng.choice(untried or list(LANES))
        if not tried:  # only choices in flight so far: no outcome to prefer one lane by
            return self.cold_start
        return max((lane for lane in LANES if lane in tried), key=lambda lane: (tried[lane].utility, -LANES.index(lane)))

    def settle(self, key: str) -> None:
        """The keyed choice's episode has ended (its outcome, if any, is in): it is no longer in flight."""
        with self._lock:
            self.in_flight_.pop(key, None)

    def expect(self, choices: Iterable[tuple[str, str, str]]) -> None:
        """Add (key, context, lane) choices in flight elsewhere, e.g. other workers' episodes."""
        with self._lock:
            for key, context, lane in choices:
                if lane not in LANES:
                    raise ValueError(f"unknown lane {lane!r} in flight; choose one of {', '.join(LANES)}")
                self.in_flight_[key] = (context, lane)

    def in_flight(self, key: str | None = None) -> list[tuple[str, str, str]]:
        """Choices in flight as (key, context, lane): all of them, or the one of `key` (none if it has not chosen)."""
        with self._lock:
            return [(k, c, lane) for k, (c, lane) in self.in_flight_.items() if key is None or k == key]

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
