"""How a run reads memory: scoped semantic retrieval, fitting plans ranked by track record, a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from atlas.agents.base import Student, TaskView, retrieval_query
from memory.store import MemoryStore


@dataclass(frozen=True)
class Retrieved:
    id: int
    score: float
    text: str
    plan: dict[str, Any] | None
    uses: int
    mean_reward: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 4), "uses": self.uses, "mean_reward": self.mean_reward, "plan": self.plan}


def retrieve(store: MemoryStore, task: TaskView, scope: Sequence[str], k: int, student: Student | None = None) -> list[Retrieved]:
    """Student pamphlets in scope, most similar to the task first, with their track records."""
    hits = store.search(retrieval_query(task, student), k=k, audience="student", tags=list(scope))
    tracks = store.track_records([h.pamphlet.id for h in hits])
    return [
        Retrieved(h.pamphlet.id, h.score, h.pamphlet.text, h.pamphlet.plan, tracks[h.pamphlet.id].uses, tracks[h.pamphlet.id].mean_reward)
        for h in hits
    ]


def fitting_plans(student: Student, task: TaskView, retrieved: Sequence[Retrieved], untested: float = 0.6, min_score: float = -1.0) -> list[Retrieved]:
    """Plans the student can run on this task and that are relevant enough (retrieval score at least
    `min_score`), best track record first (an untested plan counts as `untested`); among equals the
    shorter one (a question asks for the nearest alert), then the most used."""
    fitting = [r for r in retrieved if r.plan is not None and r.score >= min_score and student.plan_fits(task, r.plan)]

    def rank(r: Retrieved) -> tuple:
        record = r.mean_reward if r.uses and r.mean_reward is not None else untested
        return (-round(record, 6), len(r.plan.get("hops", [])) if r.plan else 0, -r.uses, r.id)

    return sorted(fitting, key=rank)


def approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def notes_within_budget(retrieved: Sequence[Retrieved], budget: int) -> list[str]:
    """Pamphlet texts for a prompt, most relevant first, stopping before the token budget is exceeded."""
    notes, used = [], 0
    for item in retrieved:
        cost = approx_tokens(item.text)
        if used + cost > budget:
            break
        notes.append(item.text)
        used += cost
    return notes
