"""Question and answer files: bad bytes and bad shapes are errors naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.investigation.errors import QuestionFileError
from benchmarks.investigation.excytin import load_excytin_questions
from benchmarks.investigation.question_formats import is_excytin_file
from benchmarks.investigation.question_files import read_answers, read_questions


def test_non_utf8_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b'{"id": "a", "answer": "x"}\n{"id": "b", "answer": "\xff"}\n')
    with pytest.raises(QuestionFileError, match="line 2: not UTF-8"):
        read_answers(path)
    excytin = tmp_path / "incident_1.json"
    excytin.write_bytes(b'[\n  {"context": "c", "question": "q", "answer": "\xff"}\n]\n')
    with pytest.raises(QuestionFileError, match="line 2: not UTF-8"):
        load_excytin_questions(excytin)


def test_a_scalar_line_is_not_a_question(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text("5\n")
    assert not is_excytin_file(path)
    with pytest.raises(QuestionFileError, match="line 1: expected a JSON object, got int"):
        read_questions(path)


def test_duplicate_and_invalid_question_records(tmp_path: Path) -> None:
    record = '{"id": "q1", "incident": 1, "difficulty": 1, "context": "c", "question": "q", "answer": "a"}'
    path = tmp_path / "q.jsonl"
    path.write_text(record + "\n" + record + "\n")
    with pytest.raises(QuestionFileError, match="line 2: question id 'q1' already used on line 1"):
        read_questions(path)
    path.write_text(record.replace('"difficulty": 1', '"difficulty": -1') + "\n")
    with pytest.raises(QuestionFileError, match="line 1: not a valid question"):
        read_questions(path)
