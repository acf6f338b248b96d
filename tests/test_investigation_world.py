"""The generated SOC world and its questions: size, determinism, answerability, no leakage, realism."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.investigation.database import SQLiteDatabase
from benchmarks.investigation.generate import generate, sha256
from benchmarks.investigation.question_files import read_questions
from benchmarks.investigation.questions import candidates
from benchmarks.investigation.solver import solve, unanswerable_reason
from benchmarks.investigation.tables import TABLES
from benchmarks.investigation.world import build_world

INCIDENT_TABLES = ("SecurityIncident", "SecurityAlert", "AlertEvidence", "SchemaInfo")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default-size world for seed 11, generated once for this module."""
    out = tmp_path_factory.mktemp("soc") / "world"
    generate(out, seed=11)
    return out


@pytest.fixture(scope="module")
def regenerated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same seed generated a second time into another folder (shared by the determinism tests)."""
    out = tmp_path_factory.mktemp("soc-again") / "world"
    generate(out, seed=11)
    return out


@pytest.fixture(scope="module")
def manifest(world_dir: Path) -> dict:
    return json.loads((world_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def questions(world_dir: Path):
    return read_questions(world_dir / "questions.jsonl")


def test_default_world_meets_the_size_targets(manifest: dict) -> None:
    assert manifest["tables"] >= 13  # 12 log tables and more, plus SchemaInfo
    assert manifest["total_rows"] >= 50_000
    assert len(manifest["incidents"]) >= 8
    assert {i["template"] for i in manifest["incidents"]} == {"bec", "spray", "malware", "oauth", "ransomware"}
    test_counts = {int(k): v for k, v in manifest["difficulty_counts"]["test"].items()}
    assert sum(test_counts.values()) >= 300
    assert set(test_counts) == {1, 2, 3, 4}
    assert all(count / sum(test_counts.values()) >= 0.10 for count in test_counts.values())
    assert manifest["dropped"]["unanswerable"] == 0


def test_manifest_hashes_match_the_files(world_dir: Path, manifest: dict) -> None:
    for name, digest in manifest["files"].items():
        assert sha256(world_dir / name) == digest


def test_same_seed_gives_byte_identical_files(world_dir: Path, regenerated_dir: Path) -> None:
    again = regenerated_dir
    for name in ("world.db", "questions.jsonl", "manifest.json"):
        assert (again / name).read_bytes() == (world_dir / name).read_bytes(), name


def test_another_seed_gives_another_world(tmp_path: Path, manifest: dict) -> None:
    other = generate(tmp_path / "other", seed=12, size="small")
    assert other["files"]["world.db"] != manifest["files"]["world.db"]
    assert len(other["incidents"]) == 5


def test_incident_count_is_configurable(tmp_path: Path) -> None:
    small = generate(tmp_path / "three", seed=5, size="small", incidents=3)
    assert len(small["incidents"]) == 3
    with pytest.raises(ValueError, match="incidents must be at least 1"):
        build_world(5, "small", incidents=0)


def test_every_table_is_described_in_schema_info(world_dir: Path) -> None:
    with sqlite3.connect(world_dir / "world.db") as db:
        described = {(t, c) for t, c in db.execute("SELECT TableName, ColumnName FROM SchemaInfo")}
        for spec in TABLES:
            assert (spec.name, "") in described
            columns = [row[1] for row in db.execute(f'PRAGMA table_info("{spec.name}")')]
            assert columns == list(spec.column_names)
            assert all((spec.name, c) in described for c in columns)


def test_attack_rows_are_not_flagged_and_sit_among_benign_rows(world_dir: Path) -> None:
    with sqlite3.connect(world_dir / "world.db") as db:
        for spec in TABLES:
            lowered = {c.lower() for c in spec.column_names}
            assert not lowered & {"ismalicious", "is_attack", "label", "attack", "malicious", "incident"}, spec.name
        times = [row[0] for row in db.execute("SELECT TimeGenerated FROM SigninLogs ORDER BY rowid")]
        assert times == sorted(times)
        # the spray's failed sign-ins are in the middle of the table, not appended at its end
        positions = [row[0] for row in db.execute("SELECT rowid FROM SigninLogs WHERE UserAgent LIKE 'python-requests%'")]
        total = db.execute("SELECT count(*) FROM SigninLogs").fetchone()[0]
        assert positions and max(positions) < total * 0.99


def test_some_rows_carry_instruction_like_text(world_dir: Path) -> None:
    with sqlite3.connect(world_dir / "world.db") as db:
        hits = 0
        for table, column in (("EmailEvents", "Subject"), ("DeviceProcessEvents", "ProcessCommandLine"), ("OfficeActivity", "Parameters")):
            hits += db.execute(f"SELECT count(*) FROM {table} WHERE lower({column}) LIKE '%ignore previous instructions%'").fetchone()[0]
    assert hits >= 3


def test_questions_have_every_recorded_field(questions) -> None:
    for question in questions[:50]:
        assert question.context and question.question and question.answer
        assert len(question.solution) == question.difficulty + 1
        assert question.solution[-1].value == question.answer
        assert len(question.path) == 2 * question.difficulty + 1
        assert question.path[0] == question.start_alert and question.path[-1] == question.end_alert
        assert question.split in ("train", "test")


def test_no_answer_or_intermediate_entity_leaks_into_the_text(questions) -> None:
    for question in questions:
        text = f"{question.context} {question.question}".casefold()
        assert question.answer.casefold() not in text, question.id
        for step in question.solution[:-1]:
            assert step.value.casefold() not in text, (question.id, step.value)


def test_several_phrasings_per_question_type(questions) -> None:
    by_type: dict[str, set[str]] = {}
    for question in questions:
        by_type.setdefault(question.answer_type, set()).add(question.question.split('"')[0])
    assert all(len(openings) >= 3 for t, openings in by_type.items() if sum(q.answer_type == t for q in questions) > 20)


def test_splits_are_per_incident_and_stable(questions, regenerated_dir: Path) -> None:
    per_incident = Counter((q.incident, q.split) for q in questions)
    for incident in {q.incident for q in questions}:
        assert per_incident[(incident, "train")] > 0 and per_incident[(incident, "test")] > 0
    regenerated = read_questions(regenerated_dir / "questions.jsonl")
    assert [(q.id, q.split) for q in regenerated] == [(q.id, q.split) for q in questions]


def test_every_question_is_answerable_from_its_text(world_dir: Path, questions) -> None:
    with SQLiteDatabase(world_dir / "world.db") as database:
        assert all(unanswerable_reason(q, database) is None for q in questions)


def test_the_solver_reads_only_the_task(world_dir: Path, questions) -> None:
    question = next(q for q in questions if q.difficulty == 3)
    with SQLiteDatabase(world_dir / "world.db") as database:
        found = solve(question.task(), database)
        assert found.answer == question.answer and found.hops == 3
        assert not any(question.answer in sql for sql in found.queries)
        # a question naming an alert that is not in the incident is caught, not answered
        broken = question.model_copy(update={"question": question.question.replace(question.question.split('"')[1], "No such alert")})
        assert unanswerable_reason(broken, database) is not None
        # a stored answer that does not match the data is caught too
        wrong = question.model_copy(update={"answer": "wrong-value"})
        assert unanswerable_reason(wrong, database) == "the solver found a different answer"


def test_candidates_respect_the_nearest_alert_rule() -> None:
    world = build_world(2, "small", incidents=2)
    found = list(candidates(world))
    assert found and all(1 <= c.difficulty <= 4 for c in found)
    for c in found:
        assert c.answer_entity.node not in c.path


def test_the_end_alert_name_never_identifies_the_end_alert(world_dir: Path, questions) -> None:
    with sqlite3.connect(world_dir / "world.db") as db:
        for question in [q for q in questions if q.split == "test"][:120]:
            ids = json.loads(db.execute("SELECT AlertIds FROM SecurityIncident WHERE AlertIds LIKE ?", (f"%{question.start_alert}%",)).fetchone()[0])
            end_name = question.question.split('"')[1]
            same = [a for a in ids if a != question.start_alert and db.execute("SELECT AlertName FROM SecurityAlert WHERE SystemAlertId = ?", (a,)).fetchone()[0] == end_name]
            assert len(same) >= 2, question.id


def test_no_test_answer_is_a_train_answer_of_the_same_incident(questions) -> None:
    train = {(q.incident, q.answer.casefold()) for q in questions if q.split == "train"}
    assert not [q.id for q in questions if q.split == "test" and (q.incident, q.answer.casefold()) in train]


def test_no_other_identifier_of_the_answer_entity_is_in_the_text(world_dir: Path, questions) -> None:
    with sqlite3.connect(world_dir / "world.db") as db:
        people = [set(r) for r in db.execute("SELECT AccountName, AccountSid, AccountObjectId, AccountUpn FROM IdentityInfo")]
        machines = [set(r) for r in db.execute("SELECT DeviceName, DeviceId, LocalIP FROM DeviceInfo")]
    for question in questions:
        text = f"{question.context} {question.question}".casefold()
        for group in people + machines:
            if question.answer in group:
                assert not [v for v in group if v and v.casefold() in text], question.id


def test_ids_do_not_reveal_difficulty(questions) -> None:
    by_id = {q.id: q.difficulty for q in questions}
    assert all(f"-d{d}-" not in qid for qid, d in by_id.items())


def test_generate_refuses_a_file_as_output_folder(tmp_path: Path) -> None:
    from benchmarks.investigation.errors import WorldError

    target = tmp_path / "a-file"
    target.write_text("keep me")
    with pytest.raises(WorldError, match="is a file"):
        generate(target, seed=1, size="small")
    assert target.read_text() == "keep me"
