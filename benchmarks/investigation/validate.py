"""`validate`: run the reference solver over a question file against a world database."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.investigation.database import open_database
from benchmarks.investigation.errors import WorldError
from benchmarks.investigation.generate import DB_FILE, QUESTIONS_FILE
from benchmarks.investigation.question_files import QuestionSet
from benchmarks.investigation.question_formats import load_question_file
from benchmarks.investigation.solver import unanswerable_reason


def load_any_questions(path: Path, strict: bool = False) -> QuestionSet:
    """This benchmark's JSONL, or an ExCyTIn-Bench question file; `strict` makes any skipped record an error."""
    if not path.is_file():
        raise WorldError(f"{path}: no such question file")
    loaded = load_question_file(path)
    return loaded.strict() if strict else loaded


def validate(
    folder: Path,
    database: str | None = None,
    questions_file: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Answerable fraction of the questions, per difficulty, with the reasons for any failure."""
    loaded = load_any_questions(questions_file or folder / QUESTIONS_FILE, strict)
    questions = loaded.questions
    target = database or str(folder / DB_FILE)
    started = time.perf_counter()
    failures: list[dict[str, str]] = []
    by_difficulty: Counter[int] = Counter()
    ok_by_difficulty: Counter[int] = Counter()
    with open_database(target) as db:
        for n, question in enumerate(questions, start=1):
            reason = unanswerable_reason(question, db)
            by_difficulty[question.difficulty] += 1
            if reason:
                failures.append({"id": question.id, "reason": reason})
            else:
                ok_by_difficulty[question.difficulty] += 1
            if progress:
                progress(n, len(questions))
    checked = len(questions)
    return {
        "checked": checked,
        "answerable": checked - len(failures),
        "answerable_fraction": (checked - len(failures)) / checked if checked else 0.0,
        "by_difficulty": {str(d): {"checked": by_difficulty[d], "answerable": ok_by_difficulty[d]} for d in sorted(by_difficulty)},
        "database": db.dialect,
        "seconds": round(time.perf_counter() - started, 3),
        "failures": failures,
        "questions_file": loaded.summary(),
    }
