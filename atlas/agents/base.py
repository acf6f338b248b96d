"""What the graph needs from agents and from a benchmark episode: small protocols and plain records.

The benchmark owns the ground truth; agents and the learner see only the task, the tool's
observations and a reward scalar. `Episode.reveals_ground_truth` lets the harness veto a pamphlet
without handing the answer to the learner.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Actor = Literal["student", "teacher"]


@dataclass(frozen=True)
class TaskView:
    """The task as agents see it (never the answer)."""

    id: str
    incident: int | str
    context: str
    question: str
    answer_type: str = "text"

    def text(self) -> str:
        return f"{self.context}\n{self.question}"


class ToolResult(Protocol):
    """What one step showed; read-only, so a frozen dataclass with a narrower `status` (a Literal) fits."""

    @property
    def observation(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def rows(self) -> int: ...
    @property
    def columns(self) -> tuple[str, ...]: ...
    @property
    def shown(self) -> tuple[tuple[Any, ...], ...]: ...


@dataclass(frozen=True)
class Score:
    reward: float
    success: bool
    breakdown: dict[str, Any] = field(default_factory=dict)  # no answer strings, ever


class Episode(Protocol):
    """One task in a sandbox, provided by a benchmark."""

    task: TaskView

    def step(self, sql: str) -> ToolResult: ...

    def score(self, answer: str | None, observations: Sequence[str]) -> Score: ...

    def reveals_ground_truth(self, text: str) -> bool: ...


@dataclass(frozen=True)
class StepRecord:
    actor: Actor
    sql: str
    status: str
    rows: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"actor": self.actor, "sql": self.sql, "status": self.status, "rows": self.rows, "seconds": round(self.seconds, 5)}


class Tool:
    """The SQL tool an agent holds: runs steps on the episode and records who ran what."""

    def __init__(self, episode: Episode, actor: Actor, budget: int) -> None:
        self.episode = episode
        self.actor: Actor = actor
        self.budget = budget
        self.steps: list[StepRecord] = []
        self.observations: list[str] = []

    @property
    def left(self) -> int:
        return self.budget - len(self.steps)

    def run(self, sql: str) -> ToolResult | None:
        """One query, or None when this agent's budget is spent."""
        if self.left <= 0:
            return None
        started = time.perf_counter()
        result = self.episode.step(sql)
        self.steps.append(StepRecord(self.actor, sql, result.status, result.rows, time.perf_counter() - started))
        self.observations.append(result.observation)
        return result


@dataclass
class Attempt:
    """One agent's try at a task: its answer (None = gave up) and what it learned about the route."""

    answer: str | None
    # how the answer was reached: for validation and distillation (LLM agents add "trace", the queries with
    # compacted results); never written to memory as is
    route: dict[str, Any] | None = None
    reason: str | None = None  # why there is no answer
    tokens: int = 0
    feedback: str = ""  # the reviewer's rationale and guidance on this answer, for distillation


@dataclass(frozen=True)
class Review:
    plan: dict[str, Any] | None
    guidance: str = ""


@dataclass(frozen=True)
class Validation:
    ok: bool
    guidance: str = ""
    rationale: str = ""  # the evidence the verdict rests on


@dataclass(frozen=True)
class Lesson:
    """What distillation proposes to write: text a model reads, a plan a procedural student runs."""

    text: str
    cue: str
    plan: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()


class Student(Protocol):
    name: str

    def cue(self, task: TaskView) -> str | None: ...

    def plan_fits(self, task: TaskView, plan: dict[str, Any] | None) -> bool: ...

    def attempt(self, task: TaskView, tool: Tool, plan: dict[str, Any] | None, guidance: Sequence[str], notes: Sequence[str]) -> Attempt: ...


class Teacher(Protocol):
    name: str

    def solve(self, task: TaskView, tool: Tool, notes: Sequence[str]) -> Attempt: ...

    def review(self, task: TaskView, plans: Sequence[dict[str, Any]]) -> Review: ...

    def validate(self, task: TaskView, attempt: Attempt, tool: Tool) -> Validation: ...

    def distil(self, task: TaskView, attempt: Attempt, reward: float) -> Lesson | Sequence[Lesson] | None: ...


def retrieval_query(task: TaskView, student: Student | None = None) -> str:
    """What memory is searched with: the student's cue for the task if it has one, else the task's words."""
    cue = student.cue(task) if student is not None else None
    return cue or task.text()
