"""Question and answer files: bad bytes and bad shapes are errors naming the file and line."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from benchmarks.investigation.errors import QuestionFileError
from benchmarks.investigation.excytin import load_excytin, load_excytin_questions
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


RECORD = '{"context": "c", "question": "Which IP?", "answer": "1.2.3.4"}'


def test_a_utf8_bom_is_accepted_and_utf16_is_named(tmp_path: Path) -> None:
    path = tmp_path / "incident_3_qa.json"
    path.write_bytes(codecs.BOM_UTF8 + f"[\n{RECORD}\n]\n".encode())
    assert [q.answer for q in load_excytin_questions(path)] == ["1.2.3.4"]
    ours = tmp_path / "questions.jsonl"
    ours.write_bytes(codecs.BOM_UTF8 + b'{"id": "q1", "incident": 1, "difficulty": 0, "context": "c", "question": "q", "answer": "a"}\n')
    assert [q.id for q in read_questions(ours)] == ["q1"]
    path.write_bytes(f"[{RECORD}]".encode("utf-16"))
    with pytest.raises(QuestionFileError, match="is UTF-16 text .* save it as UTF-8"):
        load_excytin_questions(path)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"context": "c", "question": "q", "answer": "a", "answer": "b"}', "key 'answer' appears twice"),
        ('{"context": "c", "question": "q\\ud800", "answer": "a"}', "unpaired surrogate (\\ud800)"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_records_that_would_be_altered_or_crash_are_skipped_with_a_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "incident_3_qa.jsonl"
    path.write_text(RECORD + "\n" + text + "\n")
    loaded = load_excytin(path)
    assert [q.answer for q in loaded.questions] == ["1.2.3.4"]
    assert [(s.line, reason in s.reason) for s in loaded.skipped] == [(2, True)]


def test_text_after_the_list_and_one_object_over_many_lines_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "incident_3_qa.json"
    path.write_text(f"[{RECORD}]\nmore\n")
    with pytest.raises(QuestionFileError, match="none of its 2 records is a usable question"):
        load_excytin_questions(path)
    path.write_text('{\n "context": "c",\n "question": "q",\n "answer": "a"\n}\n')
    with pytest.raises(QuestionFileError, match="holds one JSON object over several lines"):
        load_excytin_questions(path)
