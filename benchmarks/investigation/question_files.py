"""Read and write question and answer files; every bad record is reported with its file and line number.

A question file may hold records that cannot be used (real files do). `read_question_set`
keeps every good question and lists each skipped record with its line and reason, so a caller
can print them and count them in its results; `read_questions` is the strict form that fails on
the first one. `question_formats.load_question_file` reads this format or ExCyTIn-Bench's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmarks.investigation.errors import QuestionFileError
from benchmarks.investigation.json_records import RawRecord, read_records
from benchmarks.investigation.models import Question


class SubmittedAnswer(BaseModel):
    """One line of an answers file: the question id, the answer, and what the agent was shown."""

    model_config = ConfigDict(extra="ignore")

    id: str
    answer: str | None = None
    observations: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class SkippedRecord:
    """A record that is not a usable question: where it is and why."""

    file: str
    line: int
    reason: str


@dataclass
class QuestionSet:
    """The good questions of one file and every record skipped on the way."""

    path: Path
    form: str  # "atlas-jsonl" or "excytin"
    questions: list[Question] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What a results file records about the questions it used."""
        return {"file": str(self.path), "format": self.form, "loaded": len(self.questions),
                "skipped": len(self.skipped), "skipped_records": [asdict(s) for s in self.skipped]}  # fmt: skip

    def strict(self) -> QuestionSet:
        """This set, or a QuestionFileError naming the first skipped record (and how many more there are)."""
        if self.skipped:
            first = self.skipped[0]
            more = f" ({len(self.skipped) - 1} more bad records)" if len(self.skipped) > 1 else ""
            raise QuestionFileError(f"{first.file}, line {first.line}: {first.reason}{more}")
        return self

    def require_questions(self) -> QuestionSet:
        """This set, or a QuestionFileError when not one record was a usable question."""
        if not self.questions:
            first = self.skipped[0]
            raise QuestionFileError(f"{self.path}: none of its {len(self.skipped)} records is a usable question; "
                                    f"the first, line {first.line}: {first.reason}")  # fmt: skip
        return self


def unusable(record: RawRecord) -> str | None:
    """Why a record cannot be a question before its fields are looked at (unreadable, or not an object)."""
    if record.problem is None and not isinstance(record.value, dict):
        return f"expected a JSON object, got {type(record.value).__name__}"
    return record.problem


def problems(error: ValidationError) -> str:
    """A pydantic error as 'field: message; ...', short enough to print."""
    text = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in error.errors())
    return text if len(text) <= 300 else text[:297] + "..."


def write_questions(questions: Iterable[Question], path: Path) -> None:
    lines = [json.dumps(q.model_dump(mode="json"), sort_keys=True, ensure_ascii=False) for q in questions]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def atlas_questions(path: Path, records: list[RawRecord]) -> QuestionSet:
    result = QuestionSet(path, "atlas-jsonl")
    seen: dict[str, int] = {}
    for record in records:
        reason = unusable(record)
        if reason is None:
            try:
                question = Question.model_validate(record.value)
            except ValidationError as error:
                reason = f"not a valid question ({problems(error)})"
            else:
                if question.id in seen:
                    reason = f"question id {question.id!r} already used on line {seen[question.id]}"
                else:
                    seen[question.id] = record.line
                    result.questions.append(question)
        if reason is not None:
            result.skipped.append(SkippedRecord(str(path), record.line, reason))
    return result.require_questions()


def read_question_set(path: Path) -> QuestionSet:
    """This benchmark's own JSONL questions: the good ones, and each bad line with its reason."""
    return atlas_questions(path, read_records(path, "lines")[1])


def read_questions(path: Path) -> list[Question]:
    """This benchmark's own JSONL questions; any bad line is an error naming it."""
    return read_question_set(path).strict().questions


def read_answers(path: Path) -> list[SubmittedAnswer]:
    answers = []
    for record in read_records(path)[1]:
        if record.problem is not None:
            raise QuestionFileError(f"{path}, line {record.line}: {record.problem}")
        if not isinstance(record.value, dict):
            raise QuestionFileError(f"{path}, line {record.line}: expected a JSON object, got {type(record.value).__name__}")
        try:
            answers.append(SubmittedAnswer.model_validate(record.value))
        except ValidationError as error:
            raise QuestionFileError(f"{path}, line {record.line}: not a valid answer record ({problems(error)}); expected {{\"id\": ..., \"answer\": ..., \"observations\": [...]}}") from None
    return answers
