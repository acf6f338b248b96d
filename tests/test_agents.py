"""The agent system with procedural agents: graph, lanes, memory use, distillation gates, runs, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlas.agents.base import Lesson, TaskView, Tool
from atlas.config import load_settings
from atlas.distillation import prune, store_lesson
from atlas.errors import AtlasError
from atlas.runner import RunSpec, read_records, run_episodes
from benchmarks.investigation.arms import inputs_for, run_arms
from benchmarks.investigation.database import open_database
from benchmarks.investigation.episodes import SocEpisode, select_questions
from benchmarks.investigation.generate import generate
from benchmarks.investigation.procedural import SCOPE_TAG, ProceduralStudent, ProceduralTeacher
from benchmarks.investigation.question_files import read_questions
from memory.store import MemoryStore
from policies.supervision import LaneBandit, memory_context


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("agents") / "world"
    generate(out, seed=3, size="small", incidents=10)
    return out


@pytest.fixture(scope="module")
def questions(world: Path):
    return read_questions(world / "questions.jsonl")


@pytest.fixture
def settings():
    return load_settings().agents


def store_at(path: Path) -> MemoryStore:
    return MemoryStore.open(str(path), embedder="hash:128", index_dir=path.parent / "indexes")


def run(world: Path, questions, out: Path, lane: str, memory=None, learn=True, resume=False, limit=40, seed=0):
    chosen = select_questions(questions, seed=seed, limit=limit)
    with open_database(str(world / "world.db")) as database:
        spec = RunSpec(out.name, lane=lane, learn=learn, memory=memory, scope=(SCOPE_TAG,), seed=seed, resume=resume)
        return run_episodes(inputs_for(chosen, database), ProceduralStudent(), ProceduralTeacher(), load_settings().agents, spec, out)


# --- agents ---------------------------------------------------------------------------------


def _skill_items(lessons, first_id: int = 1) -> list[dict]:
    """Distilled lessons as retrieved pamphlets (ids, untested track records)."""
    return [{"id": first_id + n, "plan": lesson.plan, "uses": 0, "mean_reward": None} for n, lesson in enumerate(lessons)]


def test_teacher_distils_one_skill_per_hop_and_the_student_composes_them(world: Path, questions) -> None:
    hard = next(q for q in questions if q.difficulty == 3)
    with open_database(str(world / "world.db")) as database:
        episode = SocEpisode(hard, database)
        teacher_tool = Tool(episode, "teacher", 60)
        solved = ProceduralTeacher().solve(episode.task, teacher_tool)
        assert episode.score(solved.answer).success and len(teacher_tool.steps) > 8
        assert len(solved.route["hops"]) == 3
        lessons = ProceduralTeacher().distil(episode.task, solved, 1.0)
        assert [lesson.plan["via"] for lesson in lessons] == solved.route["hops"]
        assert lessons[0].plan["from_alert"] in hard.context and lessons[-1].plan["to_alert"] in hard.question
        assert all(lesson.plan["kind"] == "soc-hop" and lesson.plan["from_kinds"] for lesson in lessons)
        assert not [lesson for lesson in lessons if episode.reveals_ground_truth(lesson.text + json.dumps(lesson.plan))]
        assert ProceduralTeacher().distil(episode.task, solved, 0.0) == []

        student = ProceduralStudent()
        alone_tool = Tool(episode, "student", 15)
        alone = student.attempt(episode.task, alone_tool, None)
        assert alone.answer is None and len(alone_tool.steps) <= 8  # alone it looks one hop around, then stops
        composed = student.compose(episode.task, _skill_items(lessons))
        assert len(composed) == 1 and composed[0]["plan"]["kind"] == "soc-skills" and student.plan_fits(episode.task, composed[0]["plan"])
        student_tool = Tool(episode, "student", 15)
        planned = student.attempt(episode.task, student_tool, composed[0]["plan"])
        assert episode.score(planned.answer).success and len(student_tool.steps) < len(teacher_tool.steps) / 2
        assert set(planned.route["skill_ids"]) <= {item["id"] for item in _skill_items(lessons)} and planned.route["skill_ids"]


def test_the_student_alone_solves_some_one_hop_questions_only(world: Path, questions) -> None:
    student, solved = ProceduralStudent(), {1: 0, 2: 0}
    chosen = [q for q in questions if q.difficulty == 1][:20] + [q for q in questions if q.difficulty == 2][:20]
    with open_database(str(world / "world.db")) as database:
        for question in chosen:
            episode = SocEpisode(question, database)
            tool = Tool(episode, "student", 15)
            attempt = student.attempt(episode.task, tool, None)
            solved[question.difficulty] += episode.score(attempt.answer).success
            assert len(tool.steps) <= 2 + len({"account", "host", "ip", "url", "file", "process", "mailbox", "mailmessage", "cloudapp", "oauthapp"}) + 1
    assert 5 <= solved[1] <= 20 and solved[2] == 0


def test_skills_compose_a_route_for_a_pair_never_asked() -> None:
    from benchmarks.investigation.skills import Skill, SkillBook, confidence

    ab = Skill(1, "A", frozenset({"ip", "account"}), "ip", "B", 3, 1.0)
    bc = Skill(2, "B", frozenset({"ip", "host"}), "host", "C", 2, 0.9)
    other = Skill(3, "B", frozenset({"url"}), "url", "D", 0, None)
    book = SkillBook([ab, bc, other])
    assert [s.id for s in book.route("A", "C")] == [1, 2]  # A -> C was never one skill: composed from two
    assert book.route("C", "A") is None and book.distances_to("C") == {"C": 0, "B": 1, "A": 2}
    assert confidence(book, "A", "C") == (2, 0.9) and confidence(book, "A", "D") == (0, None)
    by_name = book.choose({"A"}, frozenset({"ip", "account"}), "ip", "C", frozenset({"host"}), book.distances_to("C"))
    assert by_name.by == "name" and by_name.skill == 1 and by_name.score == pytest.approx(0.7)
    # an alert no skill names: the kinds it holds still point to the pivot that led on elsewhere
    by_kind = book.choose({"Z"}, frozenset({"ip", "host"}), "host", "Y", frozenset({"host"}), book.distances_to("Y"))
    assert by_kind.by == "kind" and by_kind.skill == 2 and 0 < by_kind.score < by_name.score
    assert book.choose({"Z"}, frozenset({"file"}), "file", "Y", frozenset(), {}).score == 0.0


def test_agents_never_see_the_answer(world: Path, questions) -> None:
    task = questions[0].task()
    view = TaskView(task.id, task.incident, task.context, task.question, task.answer_type)
    assert questions[0].answer not in view.text()
    assert not hasattr(view, "answer")


def test_only_skills_fit_the_student(world: Path, questions) -> None:
    task = questions[0].task()
    view = TaskView(task.id, task.incident, task.context, task.question, task.answer_type)
    student = ProceduralStudent()
    assert not student.plan_fits(view, {"kind": "soc-walk", "start_alert": "a", "end_alert": "x", "hops": ["ip"]})
    assert not student.plan_fits(view, {"kind": "soc-hop", "from_alert": "a", "from_kinds": ["ip"], "via": "teleport", "to_alert": "b"})
    assert student.plan_fits(view, {"kind": "soc-hop", "from_alert": "a", "from_kinds": ["ip"], "via": "ip", "to_alert": "b"})
    assert student.compose(view, [{"id": 1, "plan": {"kind": "note"}, "uses": 0, "mean_reward": None}]) == []
    with open_database(str(world / "world.db")) as database:
        episode = SocEpisode(questions[0], database)
        refused = student.attempt(episode.task, Tool(episode, "student", 15), {"kind": "soc-walk", "hops": ["ip"]})
        assert refused.answer is None and "not a set of skills" in refused.reason


def test_tool_budget_is_enforced(world: Path, questions) -> None:
    with open_database(str(world / "world.db")) as database:
        episode = SocEpisode(questions[0], database)
        tool = Tool(episode, "teacher", 2)
        attempt = ProceduralTeacher().solve(episode.task, tool)
        assert len(tool.steps) == 2 and attempt.answer is None and "budget" in attempt.reason


# --- lanes --------------------------------------------------------------------------------


def test_bandit_cold_start_forced_lane_and_learning() -> None:
    bandit = LaneBandit(lam=5.0, explore=0.0)
    assert bandit.choose("good_plan") == "paired"
    for _ in range(5):
        bandit.update("good_plan", "paired", 1.0, 0.004)
        bandit.update("good_plan", "escalate", 1.0, 0.05)
    assert bandit.choose("good_plan") == "paired"
    assert LaneBandit(forced="escalate").choose("no_plan") == "escalate"
    assert memory_context(False, 0, None) == "no_plan" and memory_context(True, 0, None) == "untested_plan"
    assert memory_context(True, 3, 0.9) == "good_plan" and memory_context(True, 3, 0.2) == "weak_plan"
    with pytest.raises(ValueError, match="unknown lane 'boss'"):
        LaneBandit(forced="boss")
    with pytest.raises(ValueError, match="lambda"):
        LaneBandit(lam=-1)


def test_choices_in_flight_count_as_visits_until_settled() -> None:
    """Episodes started at once explore as if started one after another: a choice still running is a visit,
    and its lane counts as tried; choices running elsewhere are added with `expect`."""
    bandit = LaneBandit(explore=1.0, seed=3)
    assert bandit.choose("untested_plan", key="q1") == "paired"  # nothing known: the cold start
    second = bandit.choose("untested_plan", key="q2")
    assert second != "paired"  # one visit in flight: explore (rate 1) among lanes neither tried nor in flight
    assert {k for k, _, _ in bandit.in_flight()} == {"q1", "q2"} and bandit.in_flight("q2") == [("q2", "untested_plan", second)]
    bandit.update("untested_plan", "paired", 1.0, 0.01)
    bandit.settle("q1")
    bandit.settle("q2")
    assert bandit.in_flight() == []
    quiet = LaneBandit(explore=0.0)
    quiet.update("good_plan", "coach", 1.0, 0.01)
    quiet.expect([("elsewhere", "good_plan", "escalate")])
    assert quiet.choose("good_plan", key="here") == "coach"  # a choice in flight carries no outcome to prefer it by
    assert LaneBandit(explore=0.0).choose("no_plan", key="a") == "paired"
    with pytest.raises(ValueError, match="unknown lane 'boss' in flight"):
        quiet.expect([("x", "good_plan", "boss")])


@pytest.mark.parametrize("lane", ["auto", "paired", "coach", "escalate"])
def test_every_lane_runs_and_reports(world: Path, questions, tmp_path: Path, lane: str) -> None:
    memory = store_at(tmp_path / "m.sqlite")
    results = run(world, questions, tmp_path / lane, lane, memory=memory, limit=12)
    memory.close()
    assert results["episodes"] == 12 and results["lane_mix"] == {lane: 1.0}
    records = read_records(tmp_path / lane / "episodes.jsonl")
    for record in records:
        assert {"question", "lane", "success", "reward", "tokens", "queries", "cost", "seconds", "pamphlets_used", "pamphlets_written"} <= set(record)
    if lane == "escalate":
        assert all(r["queries"]["student"] == 0 and r["solved_by"] == "teacher" for r in records)
    if lane in ("paired", "coach"):
        assert all(r["queries"]["teacher"] >= 1 for r in records)


# --- memory and distillation -----------------------------------------------------------------


def test_learning_writes_plans_and_frozen_never_writes(world: Path, questions, tmp_path: Path) -> None:
    memory = store_at(tmp_path / "m.sqlite")
    run(world, questions, tmp_path / "learn", "adaptive", memory=memory, limit=60)
    learned = memory.list(limit=None)
    assert learned and all(p.plan and p.plan["kind"] == "soc-hop" for p in learned)
    assert all(SCOPE_TAG in p.tags and p.provenance.source == "distill" for p in learned)
    answers = {q.answer.casefold() for q in questions} | {s.value.casefold() for q in questions for s in q.solution if s.value and len(s.value) > 3}
    for pamphlet in learned:
        blob = (pamphlet.text + json.dumps(pamphlet.plan)).casefold()
        assert not [a for a in answers if a in blob], pamphlet.id
    used = sum(memory.track_record(p.id).uses for p in learned)
    assert used > 0
    before = [(p.id, p.version) for p in memory.list(limit=None)]
    uses_before = sum(memory.track_record(p.id).uses for p in learned)
    run(world, questions, tmp_path / "frozen", "auto", memory=memory, learn=False, limit=30, seed=1)
    assert [(p.id, p.version) for p in memory.list(limit=None)] == before
    assert sum(memory.track_record(p.id).uses for p in learned) == uses_before
    memory.close()


class _FakeEpisode:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def reveals_ground_truth(self, text: str) -> bool:
        return self.secret in text


def test_distillation_gates(tmp_path: Path, settings) -> None:
    memory = store_at(tmp_path / "m.sqlite")
    plan = {"kind": "soc-walk", "start_alert": "A", "end_alert": "B", "hops": ["ip"]}
    leaky = Lesson(text="the answer is 10.1.2.3", cue="a", plan=plan)
    assert store_lesson(memory, leaky, _FakeEpisode("10.1.2.3"), settings, "e1", "t").rejected.startswith("contains")
    long = Lesson(text="x" * (settings.max_pamphlet_chars + 1), cue="a", plan=plan)
    assert "longer than" in store_lesson(memory, long, _FakeEpisode("zzz"), settings, "e1", "t").rejected
    good = Lesson(text="from alert A to the nearest B: follow the shared IP address", cue="a", plan=plan)
    first = store_lesson(memory, good, _FakeEpisode("zzz"), settings, "e1", "t", scope=("benchmark:soc",))
    again = store_lesson(memory, good, _FakeEpisode("zzz"), settings, "e2", "t", scope=("benchmark:soc",))
    assert first.written and again.merged_into == first.written and memory.stats()["live"] == 1
    assert memory.get(first.written).provenance.episode_ids == ["e1", "e2"]
    for n in range(settings.prune_after_uses):
        memory.record_use(first.written, f"u{n}", 0.0)
    assert prune(memory, [first.written], settings, "t") == [first.written]
    assert memory.get(first.written).deleted
    memory.close()


# --- runs --------------------------------------------------------------------------------------


def test_same_seed_same_numbers(world: Path, questions, tmp_path: Path) -> None:
    one = run(world, questions, tmp_path / "a", "adaptive", memory=store_at(tmp_path / "a.sqlite"), limit=30)
    two = run(world, questions, tmp_path / "b", "adaptive", memory=store_at(tmp_path / "b.sqlite"), limit=30)
    keys = ("success_rate", "mean_reward", "cost_per_task", "queries_per_task", "lane_mix")
    assert {k: one[k] for k in keys} == {k: two[k] for k in keys}
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "episode")}  # noqa: E731
    assert [strip(r) for r in read_records(tmp_path / "a" / "episodes.jsonl")] == [strip(r) for r in read_records(tmp_path / "b" / "episodes.jsonl")]


def test_a_run_folder_is_not_overwritten_and_resumes(world: Path, questions, tmp_path: Path) -> None:
    run(world, questions, tmp_path / "r", "escalate", limit=10)
    with pytest.raises(AtlasError, match="already holds a run"):
        run(world, questions, tmp_path / "r", "escalate", limit=10)
    results = run(world, questions, tmp_path / "r", "escalate", limit=15, resume=True)
    records = read_records(tmp_path / "r" / "episodes.jsonl")
    assert results["episodes"] == 15 and [r["index"] for r in records] == list(range(15))


@pytest.mark.slow
def test_bench_arms_report_the_issue_figures(world: Path, tmp_path: Path, settings) -> None:
    results = run_arms(
        world, tmp_path / "bench", ProceduralStudent(), ProceduralTeacher(), settings,
        open_memory=store_at, seed=0, episodes=60, loto_questions=10,
    )
    arms = results["arms"]
    assert set(arms) == {"student_only", "teacher_only", "atlas_no_memory", "atlas", "atlas_frozen_transfer", "student_only_transfer"}
    for arm in arms.values():
        assert set(arm["phases"]) == {"first", "middle", "last"} and arm["episodes"] == sum(p["episodes"] for p in arm["phases"].values())
    # the figures themselves: a weak student alone, a strong expensive teacher, memory that pays off
    assert 0.05 <= arms["student_only"]["success_rate"] <= 0.6 and arms["student_only"]["queries_per_task"] <= 8
    assert arms["teacher_only"]["success_rate"] >= 0.85 and arms["teacher_only"]["queries_per_task"] >= 15
    assert arms["atlas"]["success_rate"] >= arms["teacher_only"]["success_rate"] - 0.05
    assert arms["atlas"]["phases"]["last"]["queries_per_task"] <= 0.6 * arms["teacher_only"]["queries_per_task"]
    assert arms["atlas_frozen_transfer"]["success_rate"] >= arms["student_only_transfer"]["success_rate"] + 0.2
    loto = results["leave_one_template_out"]
    assert set(loto["folds"]) == {"bec", "malware", "oauth", "ransomware", "spray"}
    assert loto["memory_success"] >= loto["student_only_success"] + 0.2
    for fold in loto["folds"].values():
        assert fold["skills"] > 0 and fold["memory"]["episodes"] == fold["student_only"]["episodes"] > 0
    pairs = results["pairs"]
    assert sum(pairs["episodes"].values()) == arms["atlas"]["episodes"] and pairs["episodes"]["unseen"] > 0
    assert pairs["student_solved_unseen"] >= pairs["student_alone_unseen"] + 0.1
    # the targets compare exactly the figures reported next to them
    checks = results["targets"]
    last = results["last_third"]
    assert checks["last_third_queries_at_most_40pct_of_teacher"]["ratio"] == last["atlas"]["queries_per_task"] / last["teacher_only"]["queries_per_task"]
    assert last["atlas"]["queries_per_task"] == arms["atlas"]["phases"]["last"]["queries_per_task"]
    assert checks["success_rises_5_points"]["first_third"] == arms["atlas"]["phases"]["first"]["success_rate"]
    assert checks["leave_one_template_out_beats_student_by_20_points"]["met"] and checks["transfer_beats_student"]["met"]
    for name in ("results.json", "report.md", "success_cost.png", "lane_mix.png", "transfer.png"):
        assert (tmp_path / "bench" / name).is_file()
    assert "Leave one attack template out" in (tmp_path / "bench" / "report.md").read_text()
