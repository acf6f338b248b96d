"""The ExCyTIn-Bench adapter: its question files, and the same sandbox on SQLite and on MariaDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.investigation.database import open_database
from benchmarks.investigation.errors import QuestionFileError, WorldError
from benchmarks.investigation.excytin import load_excytin_questions, step_value, write_excytin_questions
from benchmarks.investigation.generate import generate
from benchmarks.investigation.question_files import read_questions
from benchmarks.investigation.sandbox import InvestigationEnv
from benchmarks.investigation.server_copy import copy_world
from benchmarks.investigation.validate import validate

OFFICIAL_STYLE = [
    {
        "context": "A suspicious 'GenRansom' behavior was detected on host `vnevado-win11u`.",
        "question": "Can you identify the SID of the account that delivered ransomware-related files?",
        "answer": "S-1-5-21-1840191660-8534830288-125585561-1522",
        "solution": [
            "Suspicious 'GenRansom' behavior was detected on host `vnevado-win11u`.",
            "A compromised account with SID `S-1-5-21-1840191660-8534830288-125585561-1522` delivered files at `2024-07-04 22:35:01.491898+00:00`.",
        ],
        "start_alert": 14,
        "end_alert": 41,
        "start_entities": [7, 8],
        "end_entities": [2],
        "shortest_alert_path": [14, 7, 41],
    },
    {
        "context": "Lateral movement was observed.",
        "question": "Which IP did the attacker move to?",
        "answer": "38.142.109.10",
        "solution": "There is lateral movement to `38.142.109.10`.",
        "start_alert": 36,
        "end_alert": 101,
        "shortest_alert_path": [36, 40, 118, 7, 101],
    },
]


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("excytin") / "world"
    generate(out, seed=4, size="small")
    return out


def test_official_style_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "incident_5_qa_incident_o1-ga_c42.json"
    path.write_text(json.dumps(OFFICIAL_STYLE, indent=2))
    first, second = load_excytin_questions(path)
    assert first.incident == 5 and first.source == "excytin" and first.difficulty == 1
    assert [s.value for s in first.solution] == ["vnevado-win11u", "S-1-5-21-1840191660-8534830288-125585561-1522"]
    assert "S-1-5-21" not in first.solution[-1].lookup  # values live in `value`, not in the description
    assert second.difficulty == 2 and second.answer_type == "ip" and second.solution[0].value == "38.142.109.10"
    assert first.start_alert == "14" and first.path == ["14", "7", "41"]


def test_jsonl_variant_and_incident_field(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps({**q, "incident_number": 38}) for q in OFFICIAL_STYLE) + "\n")
    assert [q.incident for q in load_excytin_questions(path)] == [38, 38]


def test_step_value_skips_timestamps() -> None:
    assert step_value("Mimikatz on `host1` at `2024-07-04 22:35:00.846286+00:00`.") == "host1"
    assert step_value("no values here") is None


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[\n  {"context": "c", "question": "q", "answer": "a"},\n  {"context": "c"\n  "question": "q"}\n]', "line 4"),
        ('[\n  {"context": "c", "question": "q", "answer": "a"},\n\n  {"context": "c", "answer": "a"}\n]', "line 4: not an ExCyTIn question (question: Field required)"),
        ('[\n  "just a string"\n]', "line 2: expected a JSON object"),
        ('{"context": "c", "question": "q", "answer": "a"}\n{"context": "c", "question": "q", "answer": "a", "shortest_alert_path": "x"}\n', "line 2"),
        ('[\n  {"context": "c", "question": "q", "answer": "a"}\n  {"context": "c", "question": "q", "answer": "a"}\n]', "line 3: expected ',' or ']'"),
    ],
)
def test_malformed_files_name_the_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(QuestionFileError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        load_excytin_questions(path, strict=True)  # a bad record is skipped and reported unless strict


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(QuestionFileError, match="no such file"):
        load_excytin_questions(tmp_path / "none.json")


def _investigate(env: InvestigationEnv, question, answer: str):
    """A scripted investigator that follows the stored path (test-only knowledge) with plain SQL."""
    env.reset(question)
    for alert in question.path[0::2]:
        result = env.step(f"SELECT AlertId, EntityType, AccountName, DeviceName, RemoteIP, RemoteUrl, FileName, SHA256, AccountUpn, Application, OAuthApplicationId, ProcessCommandLine, NetworkMessageId FROM AlertEvidence WHERE AlertId = '{alert}'")
        assert result.status == "ok", result.observation
    return env.submit(answer)


@pytest.fixture(params=["sqlite", "mariadb"])
def adapter_target(request, small_world: Path) -> str:
    """The world's SQLite file, or a private MariaDB database (see `mariadb_url`) loaded with it."""
    if request.param == "sqlite":
        return str(small_world / "world.db")
    url = request.getfixturevalue("mariadb_url")
    copy_world(small_world / "world.db", url)
    return url


def test_adapter_runs_the_sandbox_on_excytin_files(small_world: Path, adapter_target: str, tmp_path: Path) -> None:
    ours = [q for q in read_questions(small_world / "questions.jsonl") if q.split == "test"]
    exported = tmp_path / "incident_questions.json"
    write_excytin_questions(ours, exported)
    loaded = load_excytin_questions(exported)
    assert [(q.answer, q.difficulty, q.answer_type) for q in loaded] == [(q.answer, q.difficulty, q.answer_type) for q in ours]
    question = next(q for q in loaded if q.difficulty >= 2)
    with open_database(adapter_target) as database:
        env = InvestigationEnv(database)
        solved = _investigate(env, question, question.answer)
        assert solved.success and solved.reward == 1.0
        assert len(env.log) == question.difficulty + 1 and all(e.seconds >= 0 for e in env.log)
        missed = _investigate(env, question, "not-the-answer")
        assert not missed.success and 0.0 < missed.reward < 1.0
        blocked = InvestigationEnv(database)
        blocked.reset(question)
        assert blocked.step("DROP TABLE AlertEvidence").status == "refused"
        assert blocked.step("SELECT count(*) FROM AlertEvidence").status == "ok"
    results = validate(small_world, database=adapter_target, questions_file=exported)
    assert results["checked"] == len(ours) and results["answerable_fraction"] == 1.0


def test_loading_into_a_server_keeps_existing_tables_unless_asked(small_world: Path, mariadb_url: str) -> None:
    copy_world(small_world / "world.db", mariadb_url)  # a private, empty database: nothing to replace
    with pytest.raises(WorldError, match="already has table"):
        copy_world(small_world / "world.db", mariadb_url)
    copy_world(small_world / "world.db", mariadb_url, replace=True)
    with open_database(mariadb_url) as database:
        rows = database.execute("SELECT count(*) FROM SigninLogs").rows[0][0]
    assert rows == json.loads((small_world / "manifest.json").read_text())["rows"]["SigninLogs"]


def test_loading_a_missing_world_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="no such world database"):
        copy_world(tmp_path / "none.db", "sqlite:///" + str(tmp_path / "x.db"))
