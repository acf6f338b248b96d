"""What the bench says about generalisation: held-out attack templates, and (start, end) pairs never seen before.

Leave-one-template-out: the teacher's investigations of the training questions are distilled into
skills (the `teacher_only` arm learns while it works). For each attack template T, fold T's memory is
the skills learned from at least one episode of another template (a pamphlet's provenance lists its
episodes); they are tagged `fold:T`, and a frozen student searches only those on T's questions. The
same questions run by the student alone (the `student_only` arm) are the baseline.

Seen and unseen pairs: an episode's (start alert name, end alert name) pair is seen when an earlier
episode of the same run asked for the same pair.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from benchmarks.investigation.models import Question
from memory.store import MemoryStore

FOLD_TAG = "fold:{template}"
QUOTED = re.compile(r'"([^"]+)"')


def fold_tag(template: str) -> str:
    return FOLD_TAG.format(template=template)


def question_of_episode(episode_id: str) -> str:
    """The question id inside an episode id (`run:index:question`)."""
    return episode_id.split(":", 2)[-1]


def tag_folds(store: MemoryStore, templates: dict[str, str], folds: Sequence[str], scope: Sequence[str], author: str = "bench") -> dict[str, int]:
    """Tag every live pamphlet in scope with `fold:T` for each fold T it may serve (some provenance
    episode of another template); returns how many pamphlets each fold holds."""
    counts = {fold: 0 for fold in folds}
    for pamphlet in store.list(audience="student", tags=list(scope), limit=None):
        learned_from = {templates.get(question_of_episode(e)) for e in pamphlet.provenance.episode_ids} - {None}
        admitted = [fold for fold in folds if learned_from - {fold}]
        for fold in admitted:
            counts[fold] += 1
        tags = [t for t in pamphlet.tags if not t.startswith("fold:")] + [fold_tag(f) for f in admitted]
        if tags != list(pamphlet.tags):
            store.update(pamphlet.id, tags=tags, changed_by=author, change="tagged with the leave-one-template-out folds it may serve")
    return counts


def fold_questions(questions: Sequence[Question], template: str, limit: int | None) -> list[Question]:
    """The held-out template's questions in run order (the first `limit` of them)."""
    chosen = [q for q in questions if q.template == template]
    return chosen[:limit] if limit else chosen


def success_by_difficulty(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def rate(rs: Sequence[dict[str, Any]]) -> float:
        return sum(bool(r["success"]) for r in rs) / len(rs) if rs else 0.0

    levels = sorted({int(r["meta"]["difficulty"]) for r in records if r.get("meta", {}).get("difficulty") is not None})
    return {
        "episodes": len(records),
        "success_rate": rate(records),
        "queries_per_task": sum(r["queries"]["student"] + r["queries"]["teacher"] for r in records) / len(records) if records else 0.0,
        "by_difficulty": {str(d): {"episodes": len([r for r in records if r["meta"]["difficulty"] == d]), "success_rate": rate([r for r in records if r["meta"]["difficulty"] == d])} for d in levels},
    }


def name_pair(question: Question) -> tuple[str, str] | None:
    """(start alert name, end alert name) as the task text gives them."""
    start, end = QUOTED.search(question.context), QUOTED.search(question.question)
    return (start.group(1), end.group(1)) if start and end else None


def pair_accounting(records: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]], questions: dict[str, Question]) -> dict[str, Any]:
    """Solved episodes split by whether their (start, end) pair was seen earlier in the run, and on the
    unseen ones how often the student solved (with memory) against the student alone on the same questions."""
    alone = {r["question"]: r for r in baseline}
    seen: set[tuple[str, str]] = set()
    parts: dict[str, list[dict[str, Any]]] = {"seen": [], "unseen": []}
    for record in sorted(records, key=lambda r: r["index"]):
        pair = name_pair(questions[record["question"]])
        parts["seen" if pair in seen else "unseen"].append(record)
        seen.add(pair)  # type: ignore[arg-type]
    solved = sum(bool(r["success"]) for r in records)

    def student_rate(rs: Sequence[dict[str, Any]]) -> float:
        return sum(bool(r["success"]) and r.get("solved_by") == "student" for r in rs) / len(rs) if rs else 0.0

    unseen = parts["unseen"]
    compared = [alone[r["question"]] for r in unseen if r["question"] in alone]
    return {
        "episodes": {k: len(v) for k, v in parts.items()},
        "solved_share": {k: (sum(bool(r["success"]) for r in v) / solved if solved else 0.0) for k, v in parts.items()},
        "success_rate": {k: (sum(bool(r["success"]) for r in v) / len(v) if v else 0.0) for k, v in parts.items()},
        "student_solved_unseen": student_rate(unseen),
        "student_alone_unseen": student_rate(compared),
    }
