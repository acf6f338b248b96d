"""ExCyTIn-Bench adapter: read (and write) its question files, so the same sandbox and grader run on them.

ExCyTIn question files are JSON lists (or JSONL) of objects with `context`, `question`, `answer`,
`solution` (sentences with the revealed values in backticks), `start_alert`, `end_alert`,
`start_entities`, `end_entities` and `shortest_alert_path` (alternating alert and entity nodes).
Run them against the user's own log database through a SQLAlchemy URL (MySQL in their set-up).

Real files hold imperfect records (one of incident 166's has an empty `question`): every good
record loads, and each bad one is skipped and reported with its file, line and reason
(`load_excytin`), never dropped or altered silently. A missing or NaN `context` counts as an
empty one; the answer type, which the files do not state, is inferred from the answer and its
question (`answer_types`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmarks.investigation.answer_types import infer_answer_type
from benchmarks.investigation.json_records import RawRecord, read_records
from benchmarks.investigation.models import AnswerType, Question, SolutionStep
from benchmarks.investigation.question_files import QuestionSet, SkippedRecord, problems, unusable

log = logging.getLogger(__name__)

BACKTICKED = re.compile(r"`([^`]+)`")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ tT]\d{2}:\d{2}")
INCIDENT_IN_NAME = re.compile(r"incident_(\d+)")


class ExcytinRecord(BaseModel):
    """One question as ExCyTIn-Bench stores it; unknown extra fields are kept out of the way."""

    model_config = ConfigDict(extra="ignore")

    context: str = ""
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    solution: list[str] = Field(default_factory=list)
    start_alert: int | str | None = None
    end_alert: int | str | None = None
    start_entities: list[int | str] = Field(default_factory=list)
    end_entities: list[int | str] = Field(default_factory=list)
    shortest_alert_path: list[int | str] = Field(default_factory=list)
    incident_number: int | str | None = None
    # not in ExCyTIn's files; written by `to_excytin` so our own questions keep their normalisation
    answer_type: AnswerType | None = None

    @field_validator("context", mode="before")
    @classmethod
    def _no_context(cls, value: Any) -> Any:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value

    @field_validator("question", "answer", mode="after")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank")
        return value

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value

    @field_validator("solution", mode="before")
    @classmethod
    def _solution_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def step_value(sentence: str) -> str | None:
    """The value a solution sentence reveals: its last backticked value that is neither a timestamp
    nor a bare number (a process id), unless nothing else is backticked."""
    values = [v.strip() for v in BACKTICKED.findall(sentence) if not TIMESTAMP.match(v.strip())]
    named = [v for v in values if not v.isdigit()]
    return (named or values or [None])[-1]


def to_question(record: ExcytinRecord, incident: int | str, index: int) -> Question:
    steps = [SolutionStep(lookup=re.sub(BACKTICKED, "`…`", s), value=step_value(s)) for s in record.solution]
    if steps and steps[-1].value is None:
        steps[-1] = SolutionStep(lookup=steps[-1].lookup, value=record.answer)
    path = [str(node) for node in record.shortest_alert_path]
    return Question(
        id=f"excytin-{incident}-{index:04d}",
        incident=incident,
        difficulty=max(0, (len(path) - 1) // 2),
        context=record.context,
        question=record.question,
        answer=record.answer,
        answer_type=record.answer_type or infer_answer_type(record.answer, record.question),
        solution=steps,
        path=path,
        start_alert=None if record.start_alert is None else str(record.start_alert),
        end_alert=None if record.end_alert is None else str(record.end_alert),
        source="excytin",
    )


def _incident_of(path: Path, incident: int | str | None) -> int | str:
    match = INCIDENT_IN_NAME.search(path.name)
    return incident if incident is not None else (int(match.group(1)) if match else path.stem)


def excytin_questions(path: Path, records: list[RawRecord], incident: int | str | None = None) -> QuestionSet:
    """The questions of ExCyTIn records; the incident comes from the record, the argument or the file name."""
    default = _incident_of(path, incident)
    result = QuestionSet(path, "excytin")
    for index, record in enumerate(records):
        reason = unusable(record)
        if reason is None:
            try:
                parsed = ExcytinRecord.model_validate(record.value)
                number = parsed.incident_number if parsed.incident_number is not None else default
                result.questions.append(to_question(parsed, number, index))
            except ValidationError as error:
                reason = f"not an ExCyTIn question ({problems(error)})"
        if reason is not None:
            result.skipped.append(SkippedRecord(str(path), record.line, reason))
    return result.require_questions()


def load_excytin(path: Path, incident: int | str | None = None) -> QuestionSet:
    """Every good question of an ExCyTIn file, and each skipped record with its line and reason."""
    return excytin_questions(path, read_records(path)[1], incident)


def load_excytin_questions(path: Path, incident: int | str | None = None, *, strict: bool = False) -> list[Question]:
    """The good questions of an ExCyTIn file. Skipped records are logged as warnings (`strict`: an error);
    `load_excytin` returns them with the questions."""
    loaded = load_excytin(path, incident)
    if strict:
        loaded.strict()
    for skipped in loaded.skipped:
        log.warning("%s, line %d: skipped: %s", skipped.file, skipped.line, skipped.reason)
    return loaded.questions


def to_excytin(question: Question) -> dict[str, Any]:
    """This benchmark's question in ExCyTIn's format (alert and entity nodes as our ids)."""
    path = question.path
    return {
        "context": question.context,
        "question": question.question,
        "answer": question.answer,
        "solution": [f"Look up {s.lookup}: `{s.value}`." if s.value else f"Look up {s.lookup}." for s in question.solution],
        "start_alert": question.start_alert,
        "end_alert": question.end_alert,
        "start_entities": path[1:2],
        "end_entities": [],
        "shortest_alert_path": path,
        "incident_number": question.incident,
        "answer_type": question.answer_type,
    }


def write_excytin_questions(questions: Iterable[Question], path: Path) -> int:
    records = [to_excytin(q) for q in questions]
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return len(records)
