"""SOC questions as episodes for the agent graph: the sandbox plus a scorer that keeps the ground truth."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

from atlas.agents.base import Score, TaskView
from benchmarks.investigation.database import ReadOnlyDatabase
from benchmarks.investigation.database import QueryFailed, QueryRefused, QueryTimeout
from benchmarks.investigation.errors import DatabaseError, WorldError
from benchmarks.investigation.incidents import ANSWER_COLUMNS, KEY_COLUMN
from benchmarks.investigation.models import Question
from benchmarks.investigation.sandbox import InvestigationEnv, SandboxConfig, StepResult

log = logging.getLogger(__name__)


class SocEpisode:
    """One question in a fresh sandbox. Agents get `task` and `step`; only the harness calls the rest."""

    def __init__(self, question: Question, database: ReadOnlyDatabase, config: SandboxConfig | None = None) -> None:
        self._question = question
        self._database = database
        self._values: list[str] | None = None
        self._env = InvestigationEnv(database, config or SandboxConfig(max_steps=1000))
        self._env.reset(question)
        task = question.task()
        self.task = TaskView(task.id, task.incident, task.context, task.question, task.answer_type)

    def step(self, sql: str) -> StepResult:
        return self._env.step(sql)

    def score(self, answer: str | None, observations: Sequence[str] = ()) -> Score:
        """Grade with the benchmark grader on everything the sandbox showed; no answer strings leave."""
        grade = self._env.grader.grade(self._question, answer, list(self._env.observations) + list(observations))
        return Score(grade.reward, grade.success, {"partial": grade.partial, "steps": [s.found for s in grade.steps]})

    def reveals_ground_truth(self, text: str) -> bool:
        """True when the text holds this question's answer, a solution value, or any entity value of
        its incident (an account, host, address, file, ...): a lesson must not carry the world's values."""
        plain = " ".join(text.casefold().split())
        values = [self._question.answer] + [s.value for s in self._question.solution if s.value] + self._incident_values()
        return any(" ".join(v.casefold().split()) in plain for v in values if len(v.strip()) >= 3)

    def _incident_values(self) -> list[str]:
        """Every entity value on the alerts of the question's incident (read by the harness, never shown to agents)."""
        if self._values is None:
            columns = sorted({*KEY_COLUMN.values(), *(c for kinds in ANSWER_COLUMNS.values() for c in kinds.values())})
            try:
                incident = self._database.execute(
                    f"SELECT AlertIds FROM SecurityIncident WHERE IncidentNumber = {int(self._question.incident)}", row_limit=1, count_limit=1
                )
                alerts = json.loads(incident.rows[0][0]) if incident.rows else []
                listed = ", ".join("'" + str(a).replace("'", "''") + "'" for a in alerts) or "''"
                rows = self._database.execute(
                    f"SELECT {', '.join(columns)} FROM AlertEvidence WHERE AlertId IN ({listed})", row_limit=100_000, count_limit=100_000, time_limit_s=30.0
                ).rows
            except (DatabaseError, QueryFailed, QueryRefused, QueryTimeout, ValueError, TypeError) as error:
                # a database without this world's incident tables (an ExCyTIn copy): the question's own values still apply
                log.warning("lesson gate: cannot read the entity values of incident %r (%s); checking the question's values only", self._question.incident, error)
                rows = ()
            self._values = sorted({str(v) for row in rows for v in row if v is not None and str(v).strip()})
        return self._values


def select_questions(
    questions: Sequence[Question],
    split: str | None = None,
    incidents: Sequence[int] | None = None,
    exclude_incidents: Sequence[int] = (),
    limit: int | None = None,
    seed: int = 0,
) -> list[Question]:
    """A seeded order of the chosen questions (the order a run meets them)."""
    chosen = [
        q for q in questions
        if (split is None or q.split == split) and (incidents is None or q.incident in incidents) and q.incident not in exclude_incidents
    ]
    if not chosen:
        raise WorldError(f"no questions match split={split}, incidents={list(incidents) if incidents else 'any'}")
    random.Random(f"order:{seed}").shuffle(chosen)
    return chosen[:limit] if limit else chosen


def world_paths(folder: Path) -> tuple[Path, Path]:
    db, questions = folder / "world.db", folder / "questions.jsonl"
    for path in (db, questions):
        if not path.is_file():
            raise WorldError(f"{folder}: no {path.name}; generate a world with `atlas bench soc generate --out {folder}`")
    return db, questions
