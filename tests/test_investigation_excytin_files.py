"""The official ExCyTIn-Bench test questions (microsoft/SecRL, secgym/questions/test/, MIT license; see
shared/data/excytin/README.md): they load whole, their answer types are inferred, and they grade as they should.
Also the optional LLM judge, against the fake OpenAI-compatible server with the real `openai` client.

The files live in the project's shared data folder beside the repository (ATLAS_EXCYTIN_DIR overrides it).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atlas.cli.main import app
from atlas.llm import make_llm
from benchmarks.investigation.answer_types import infer_answer_type
from benchmarks.investigation.answer_variants import self_consistency, surface_variants
from benchmarks.investigation.errors import QuestionFileError
from benchmarks.investigation.excytin import load_excytin, load_excytin_questions
from benchmarks.investigation.grader import Grader, normalize_answer
from benchmarks.investigation.judge import AnswerJudge, read_verdict
from benchmarks.investigation.models import Question
from tests.conftest import REPO_ROOT
from tests.openai_server import Fault

EXCYTIN_DIR = Path(os.environ.get("ATLAS_EXCYTIN_DIR", REPO_ROOT.parent / "shared" / "data" / "excytin"))
FILES = sorted(EXCYTIN_DIR.glob("incident_*_qa_incident_o1-ga_c42.json"))
runner = CliRunner()
pytestmark = pytest.mark.skipif(not FILES, reason=f"the ExCyTIn-Bench question files are not in {EXCYTIN_DIR}")


@pytest.fixture(scope="module")
def loaded():
    return {path.name: load_excytin(path) for path in FILES}


@pytest.fixture(scope="module")
def questions(loaded) -> list[Question]:
    return [q for item in loaded.values() for q in item.questions]


def test_all_589_records_load_and_the_bad_one_is_reported(loaded) -> None:
    assert len(FILES) == 8
    assert sum(len(item.questions) for item in loaded.values()) == 588
    skipped = [s for item in loaded.values() for s in item.skipped]
    assert len(skipped) == 1
    bad = skipped[0]
    assert bad.file.endswith("incident_166_qa_incident_o1-ga_c42.json") and bad.line == 2050 and "question" in bad.reason
    assert len(loaded["incident_166_qa_incident_o1-ga_c42.json"].questions) == 86  # the other 86 are kept
    assert {q.incident for q in loaded["incident_5_qa_incident_o1-ga_c42.json"].questions} == {5}


def test_strict_loading_names_the_bad_record() -> None:
    path = EXCYTIN_DIR / "incident_166_qa_incident_o1-ga_c42.json"
    with pytest.raises(QuestionFileError, match=r"incident_166_qa_incident_o1-ga_c42.json, line 2050: not an ExCyTIn question \(question"):
        load_excytin_questions(path, strict=True)
    assert len(load_excytin_questions(path)) == 86


def test_answer_types_are_inferred_from_the_data(questions) -> None:
    types = Counter(q.answer_type for q in questions)
    assert types["text"] <= 10  # nearly every answer gets a specific type
    by_answer = {q.answer: q.answer_type for q in questions}
    assert by_answer["vectorsandarrows.com"] == "domain"  # typed text before: its URL form did not match
    assert by_answer["http://vectorsandarrows.com/"] == "url"
    assert by_answer["S-1-5-21-1840191660-8534830288-125585561-1522"] == "account_sid"
    assert by_answer["198.43.121.209"] == "ip" and by_answer["mimikatz.exe"] == "file_name"
    assert by_answer["2024-07-22 12:59:26.126190+00:00"] == "timestamp" and by_answer["20893"] == "number"
    assert by_answer["bcdedit /set recoveryenabled no"] == "command_line"
    assert by_answer["alyssat@vnevado.alpineskihouse.co"] in ("account_upn", "mailbox")
    assert by_answer["vnevado-win11u"] == "host_name" and by_answer["samuelf"] == "account_name"


def test_every_answer_grades_1_against_itself_and_its_surface_variants(questions) -> None:
    consistency = self_consistency(questions)
    assert consistency["itself"]["questions"] == 588
    assert {name: row["share"] for name, row in consistency.items()} == dict.fromkeys(consistency, 1.0)
    for name in ("upper case", "whitespace", "quoted", "trailing dot", "url scheme", "DOMAIN\\user", "braces"):
        assert consistency[name]["questions"] > 0, name


def test_the_named_surface_variants() -> None:
    assert normalize_answer("HTTPS://VectorsAndArrows.com.", "domain") == normalize_answer("vectorsandarrows.com", "domain")
    assert normalize_answer("VNEVADO\\alyssat", "account_upn") == normalize_answer("alyssat@vnevado.alpineskihouse.co", "account_upn")
    assert normalize_answer("alyssat@avoriaz.alpineskihouse.co", "account_upn") != normalize_answer("alyssat@vnevado.alpineskihouse.co", "account_upn")
    assert normalize_answer("2024-07-22T12:59:26.12619Z", "timestamp") == normalize_answer("2024-07-22 12:59:26.126190+00:00", "timestamp")
    assert normalize_answer("2024-07-22 14:59:26.12619+02:00", "timestamp") == normalize_answer("2024-07-22 12:59:26.126190+00:00", "timestamp")
    assert normalize_answer("ProcessId 3,624", "number") == "3624"
    assert normalize_answer("C:/Temp//x\\", "path") == normalize_answer("c:\\temp\\x", "path")
    variants = surface_variants("http://vectorsandarrows.com/", "url")
    assert variants["url scheme"] == "https://vectorsandarrows.com/" and variants["no url scheme"] == "vectorsandarrows.com/"


def test_a_wrong_answer_grades_0_unless_its_trajectory_observed_solution_steps(loaded) -> None:
    grader = Grader()
    checked = credited = 0
    for item in loaded.values():
        answers = {normalize_answer(q.answer, q.answer_type): q.answer for q in item.questions}
        for question in item.questions:
            own = normalize_answer(question.answer, question.answer_type)
            wrong = next(a for form, a in answers.items() if form != own and normalize_answer(a, question.answer_type) != own)
            assert grader.grade(question, wrong).reward == 0.0
            checked += 1
            steps = [s.value for s in question.solution[:-1] if s.value]
            if steps:  # the agent saw an intermediate value: partial credit, never full
                grade = grader.grade(question, wrong, [f"row: {steps[-1]}"])
                assert 0.0 < grade.reward < 1.0 and not grade.success
                credited += 1
    assert checked == 588 and credited > 100


def test_empty_files_and_empty_lists_are_errors(tmp_path: Path) -> None:
    for text in ("", "   \n", "[]", "[\n]\n"):
        path = tmp_path / "incident_9_qa.json"
        path.write_text(text)
        with pytest.raises(QuestionFileError, match="holds no records"):
            load_excytin_questions(path)


def test_records_with_an_empty_or_missing_context_are_questions(tmp_path: Path) -> None:
    path = tmp_path / "incident_9_qa.json"
    records = [{"context": "", "question": "Which IP?", "answer": "1.2.3.4"}, {"context": None, "question": "Which host?", "answer": "ws-1"},
               {"question": "Which file?", "answer": "a.exe"}, {"context": "c", "question": "  ", "answer": "x"}]  # fmt: skip
    path.write_text(json.dumps(records))
    loaded = load_excytin(path)
    assert [q.answer for q in loaded.questions] == ["1.2.3.4", "ws-1", "a.exe"] and loaded.questions[1].context == ""
    assert [(s.line, "blank" in s.reason) for s in loaded.skipped] == [(1, True)]
    path.write_text('[{"context": NaN, "question": "Which IP?", "answer": "1.2.3.4"}]')
    assert load_excytin(path).questions[0].context == ""


def test_inspect_reports_each_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "soc", "inspect", str(EXCYTIN_DIR), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [Path(f["file"]).name for f in report["files"]] == [p.name for p in FILES]
    by_name = {Path(f["file"]).name: f for f in report["files"]}
    assert by_name["incident_166_qa_incident_o1-ga_c42.json"]["skipped_records"][0]["line"] == 2050
    assert by_name["incident_5_qa_incident_o1-ga_c42.json"]["answer_types"]["domain"] == 2
    assert report["self_consistency"]["itself"]["share"] == 1.0
    strict = runner.invoke(app, ["bench", "soc", "inspect", str(FILES[1]), "--strict"])
    assert isinstance(strict.exception, QuestionFileError) and "line 2050" in str(strict.exception)


def _answers_file(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_grade_counts_skipped_records_in_its_results(tmp_path: Path) -> None:
    questions_file = EXCYTIN_DIR / "incident_166_qa_incident_o1-ga_c42.json"
    first = load_excytin(questions_file).questions[0]
    answers = _answers_file(tmp_path, [{"id": first.id, "answer": f"  {first.answer.upper()} "}])
    out = tmp_path / "grades.json"
    result = runner.invoke(app, ["bench", "soc", "grade", "--questions", str(questions_file), "--answers", str(answers), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["questions_file"]["skipped"] == 1 and summary["questions_file"]["loaded"] == 86
    assert summary["success_rate"] == 1.0 and "judge" not in summary


def _judge_replier(messages: list[dict[str, str]]) -> str:
    """A stand-in judge: correct when the golden answer's text appears in the submitted one (case-blind)."""
    body = messages[-1]["content"]
    golden = body.split("Golden answer: ", 1)[1].split("\n\nSubmitted answer: ", 1)[0]
    submitted = body.split("\n\nSubmitted answer: ", 1)[1]
    return f"Analysis: compared.\nVerdict: {'correct' if golden.lower() in submitted.lower() else 'incorrect'}"


def test_the_llm_judge_decides_records_its_prompt_and_is_metered(openai_server, openai_settings) -> None:
    openai_server.replier = _judge_replier
    judge = AnswerJudge(make_llm("openai:gpt-4o-mini", openai_settings))
    question = Question(id="q", incident=5, difficulty=1, context="A host was attacked.", question="Which host?",
                        answer="vnevado-win11u", answer_type="host_name")  # fmt: skip
    grader = Grader(judge=judge)
    fuzzy = grader.assess(question, "The attacked host is vnevado-win11u, seen at 09:00")
    assert fuzzy.grade.success and fuzzy.grade.reward == 1.0 and not fuzzy.matched  # the judge accepts; the match does not
    assert fuzzy.judgement is not None and fuzzy.judgement.verdict is True
    sent = fuzzy.judgement.messages[-1]["content"]
    assert "Golden answer: vnevado-win11u" in sent and "Submitted answer: The attacked host" in sent
    assert openai_server.requests[-1]["messages"][-1]["content"] == sent
    wrong = grader.assess(question, "vnevado-win10s")
    assert not wrong.grade.success and wrong.judgement.verdict is False and not wrong.matched
    totals = judge.llm.meter.totals()
    assert totals.calls == 2 and totals.prompt_tokens > 0 and totals.cost_usd > 0
    assert fuzzy.judgement.cost_usd > 0 and fuzzy.judgement.prompt_tokens > 0


def test_an_unreadable_or_failed_judge_falls_back_to_the_match(openai_server, openai_settings) -> None:
    openai_server.replier = lambda messages: "I think so."
    judge = AnswerJudge(make_llm("openai:gpt-4o-mini", openai_settings))
    question = Question(id="q", incident=5, difficulty=0, context="", question="Which IP?", answer="1.2.3.4", answer_type="ip")
    unreadable = Grader(judge=judge).assess(question, "1.2.3.4")
    assert unreadable.grade.success and unreadable.judgement.verdict is None and "no 'Verdict" in unreadable.judgement.error
    openai_server.queue(*[Fault(status=500)] * 3)
    failed = Grader(judge=judge).assess(question, "9.9.9.9")
    assert not failed.grade.success and failed.judgement.verdict is None and "attempts" in failed.judgement.error
    assert read_verdict("Analysis: x\nVerdict: **Correct**") is True and read_verdict("Verdict: incorrect") is False


def test_grade_with_a_judge_reports_agreement(openai_server, openai_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    openai_server.replier = _judge_replier
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    questions_file = EXCYTIN_DIR / "incident_5_qa_incident_o1-ga_c42.json"
    picked = load_excytin(questions_file).questions[:3]
    rows = [{"id": picked[0].id, "answer": picked[0].answer}, {"id": picked[1].id, "answer": f"it is {picked[1].answer} I think"},
            {"id": picked[2].id, "answer": "nothing"}]  # fmt: skip
    out = tmp_path / "grades.json"
    result = runner.invoke(app, ["bench", "soc", "grade", "--questions", str(questions_file), "--answers", str(_answers_file(tmp_path, rows)),
                                 "--judge", "openai:gpt-4o-mini", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    judge = written["summary"]["judge"]
    assert (judge["judged"], judge["agree"], judge["judge_only"], judge["match_only"], judge["calls"]) == (3, 2, 1, 0, 3)
    assert written["summary"]["success_rate"] == pytest.approx(2 / 3)
    assert all(g["judge"]["messages"][0]["role"] == "system" and g["judge"]["reply"].startswith("Analysis") for g in written["grades"])
    assert "agrees with the normalised match on 2/3" in " ".join(result.output.split())


def test_infer_answer_type_shapes() -> None:
    assert infer_answer_type("10.0.0.1") == "ip" and infer_answer_type("fe80::1") == "ip"
    assert infer_answer_type("d41d8cd98f00b204e9800998ecf8427e") == "hash" and infer_answer_type("a" * 64) == "sha256"
    assert infer_answer_type("{0F8FAD5B-D9CB-469F-A165-70867728950E}", "Which device?") == "device_id"
    assert infer_answer_type("c:\\windows\\temp\\x.exe") == "path" and infer_answer_type("Some words here") == "text"
