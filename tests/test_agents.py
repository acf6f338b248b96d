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


def test_teacher_solves_by_search_and_student_needs_a_plan(world: Path, questions) -> None:
    hard = next(q for q in questions if q.difficulty == 3)
    with open_database(str(world / "world.db")) as database:
        episode = SocEpisode(hard, database)
        teacher_tool = Tool(episode, "teacher", 60)
        solved = ProceduralTeacher().solve(episode.task, teacher_tool)
        assert episode.score(solved.answer).success and len(teacher_tool.steps) > 8
        assert len(solved.route["hops"]) == 3
        lesson = ProceduralTeacher().distil(episode.task, solved, 1.0)
        assert lesson.plan["hops"] == solved.route["hops"] and hard.answer not in lesson.text

        student = ProceduralStudent()
        alone = student.attempt(episode.task, Tool(episode, "student", 15), None)
        assert alone.answer is None and "no plan fits" in alone.reason
        assert student.plan_fits(episode.task, lesson.plan)
        student_tool = Tool(episode, "student", 15)
        planned = student.attempt(episode.task, student_tool, lesson.plan)
        assert episode.score(planned.answer).success and len(student_tool.steps) < len(teacher_tool.steps)


def test_agents_never_see_the_answer(world: Path, questions) -> None:
    task = questions[0].task()
    view = TaskView(task.id, task.incident, task.context, task.question, task.answer_type)
    assert questions[0].answer not in view.text()
    assert not hasattr(view, "answer")


def test_a_plan_for_another_task_does_not_fit(world: Path, questions) -> None:
    first, other = questions[0], next(q for q in questions if q.context.split('"')[1] != questions[0].context.split('"')[1])
    plan = {"kind": "soc-walk", "start_alert": other.context.split('"')[1], "end_alert": "x", "hops": ["ip"]}
    task = first.task()
    assert not ProceduralStudent().plan_fits(TaskView(task.id, task.incident, task.context, task.question, task.answer_type), plan)


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
    assert learned and all(p.plan and p.plan["kind"] == "soc-walk" for p in learned)
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


def test_bench_arms_report_the_issue_figures(world: Path, tmp_path: Path, settings) -> None:
    results = run_arms(
        world, tmp_path / "bench", ProceduralStudent(), ProceduralTeacher(), settings,
        open_memory=store_at, seed=0, episodes=60,
    )
    assert set(results["arms"]) == {"student_only", "teacher_only", "atlas_no_memory", "atlas", "atlas_frozen_transfer", "student_only_transfer"}
    for arm in results["arms"].values():
        assert {"episodes", "success_rate", "mean_reward", "cost_per_task", "tokens_per_task", "queries_per_task", "lane_mix", "phases"} <= set(arm)
        assert set(arm["phases"]) == {"first", "middle", "last"}
    assert results["arms"]["teacher_only"]["cost_per_task"] > results["arms"]["student_only"]["cost_per_task"]
    for name in ("results.json", "report.md", "success_cost.png", "lane_mix.png", "transfer.png"):
        assert (tmp_path / "bench" / name).is_file()
