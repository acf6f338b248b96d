"""Either question-file format, told apart by its records: this benchmark's JSONL or ExCyTIn-Bench's."""

from __future__ import annotations

from pathlib import Path

from benchmarks.investigation.excytin import excytin_questions
from benchmarks.investigation.json_records import RawRecord, read_records
from benchmarks.investigation.question_files import QuestionSet, atlas_questions


def _excytin_form(form: str, records: list[RawRecord]) -> bool:
    """A JSON list is ExCyTIn's; so is JSONL whose first readable record is an object without our `id` and `difficulty`."""
    if form == "list":
        return True
    first = next((r for r in records if r.problem is None), None)
    return first is not None and isinstance(first.value, dict) and not ("id" in first.value and "difficulty" in first.value)


def load_question_file(path: Path, incident: int | str | None = None) -> QuestionSet:
    """The good questions of either format, with each skipped record and its reason."""
    form, records = read_records(path)
    return excytin_questions(path, records, incident) if _excytin_form(form, records) else atlas_questions(path, records)


def is_excytin_file(path: Path) -> bool:
    """Whether `load_question_file` reads the file as ExCyTIn-Bench's."""
    return _excytin_form(*read_records(path))
