"""`atlas bench atlas`: the same questions through five arms, to show what memory and lanes buy.

student_only (student alone, no memory), teacher_only (every task escalated), atlas_no_memory
(adaptive lanes without memory), atlas (adaptive lanes, learning into memory), and
atlas_frozen_transfer (the memory atlas learned on the training incidents, frozen, on a held-out
incident, student alone) compared with student_only_transfer (student alone on that incident).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.agents.base import Student, Teacher
from atlas.config import AgentSettings
from atlas.llm.meter import Meter
from atlas.runner import EpisodeInput, RunSpec, read_records, run_episodes
from benchmarks.investigation.database import open_database
from benchmarks.investigation.episodes import SocEpisode, select_questions, world_paths
from benchmarks.investigation.models import Question
from benchmarks.investigation.procedural import SCOPE_TAG
from benchmarks.investigation.question_files import read_questions
from benchmarks.reports import arms_table, plot_arms, plot_lane_mix
from memory.store import MemoryStore

ARMS = ("student_only", "teacher_only", "atlas_no_memory", "atlas", "atlas_frozen_transfer", "student_only_transfer")


@dataclass
class BenchPlan:
    """Which questions each arm meets: the training incidents' questions, and one held-out incident."""

    training: list[Question]
    holdout: list[Question]
    holdout_incident: int


def plan_questions(questions: list[Question], seed: int, episodes: int | None, holdout: int | None) -> BenchPlan:
    incidents = sorted({int(q.incident) for q in questions})
    held = holdout if holdout is not None else incidents[-1]
    if held not in incidents:
        raise ValueError(f"--holdout {held} is not an incident of this world; choose one of {incidents}")
    training = select_questions(questions, exclude_incidents=[held], limit=episodes, seed=seed)
    return BenchPlan(training, select_questions(questions, incidents=[held], seed=seed), held)


def inputs_for(questions: list[Question], database) -> list[EpisodeInput]:
    return [
        EpisodeInput(make=(lambda q=q: SocEpisode(q, database)), task_id=q.id, meta={"difficulty": q.difficulty, "incident": q.incident, "split": q.split})
        for q in questions
    ]


def run_arms(
    world: Path,
    out: Path,
    student: Student,
    teacher: Teacher,
    settings: AgentSettings,
    open_memory: Callable[[Path], MemoryStore],
    seed: int = 0,
    episodes: int | None = None,
    holdout: int | None = None,
    meter: Meter | None = None,
    resume: bool = False,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    memory_path: Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run every arm into out/<arm>/ and write out/results.json, report.md and the plots."""
    db_path, questions_path = world_paths(world)
    plan = plan_questions(read_questions(questions_path), seed, episodes, holdout)
    out.mkdir(parents=True, exist_ok=True)
    learned = memory_path or out / "atlas" / "memory.sqlite"
    started = time.perf_counter()
    arms: dict[str, dict[str, Any]] = {}
    with open_database(str(db_path)) as database:
        training, held_out = inputs_for(plan.training, database), inputs_for(plan.holdout, database)
        specs = [
            ("student_only", training, RunSpec("student_only", lane="auto", learn=False, seed=seed, resume=resume), None),
            ("teacher_only", training, RunSpec("teacher_only", lane="escalate", learn=False, seed=seed, resume=resume), None),
            ("atlas_no_memory", training, RunSpec("atlas_no_memory", lane="adaptive", learn=False, seed=seed, resume=resume), None),
            ("atlas", training, RunSpec("atlas", lane="adaptive", learn=True, seed=seed, resume=resume), learned),
            ("atlas_frozen_transfer", held_out, RunSpec("atlas_frozen_transfer", lane="auto", learn=False, seed=seed, resume=resume), learned),
            ("student_only_transfer", held_out, RunSpec("student_only_transfer", lane="auto", learn=False, seed=seed, resume=resume), None),
        ]
        for name, inputs, spec, memory_file in specs:
            store = open_memory(memory_file) if memory_file else None
            try:
                spec.memory, spec.scope, spec.workers = store, (SCOPE_TAG,), workers
                spec.extra = {"questions": len(inputs)}
                callback = (lambda record, arm=name: progress(arm, record)) if progress else None
                arms[name] = run_episodes(inputs, student, teacher, settings, spec, out / name, meter=meter, progress=callback, should_stop=should_stop)
            finally:
                if store is not None:
                    store.close()
    results = {
        "world": str(world),
        "seed": seed,
        "student": student.name,
        "teacher": teacher.name,
        "holdout_incident": plan.holdout_incident,
        "training_questions": len(plan.training),
        "holdout_questions": len(plan.holdout),
        "memory": str(learned),
        "seconds": round(time.perf_counter() - started, 1),
        "arms": {name: _arm_figures(arm) for name, arm in arms.items()},
        "targets": targets(arms),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    records = {name: read_records(out / name / "episodes.jsonl") for name in ("student_only", "teacher_only", "atlas_no_memory", "atlas")}
    plot_arms(records, out / "success_cost.png")
    plot_arms({name: read_records(out / name / "episodes.jsonl") for name in ("atlas_frozen_transfer", "student_only_transfer")}, out / "transfer.png", window=15)
    plot_lane_mix(records["atlas"], out / "lane_mix.png", title="atlas: lane mix over time")
    (out / "report.md").write_text(_report(results), encoding="utf-8")
    return results


def _arm_figures(arm: dict[str, Any]) -> dict[str, Any]:
    keys = ("episodes", "success_rate", "mean_reward", "cost_per_task", "tokens_per_task", "queries_per_task", "lane_mix", "phases", "by_difficulty", "bandit")
    return {k: arm[k] for k in keys if k in arm}


def targets(arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's three checks, with the figures they compare."""
    last = arms["atlas"]["phases"]["last"]
    first = arms["atlas"]["phases"]["first"]
    teacher = arms["teacher_only"]
    return {
        "last_third_success_at_least_teacher": {"atlas_last_third": last["success_rate"], "teacher_only": teacher["success_rate"], "met": last["success_rate"] >= teacher["success_rate"]},
        "last_third_cost_at_most_30pct_of_teacher": {
            "atlas_last_third": last["cost_per_task"], "teacher_only": teacher["cost_per_task"],
            "ratio": last["cost_per_task"] / teacher["cost_per_task"] if teacher["cost_per_task"] else None,
            "met": last["cost_per_task"] <= 0.30 * teacher["cost_per_task"],
        },
        "success_rises": {"first_third": first["success_rate"], "last_third": last["success_rate"], "met": last["success_rate"] > first["success_rate"]},
        "transfer_beats_student": {
            "atlas_frozen_transfer": arms["atlas_frozen_transfer"]["success_rate"], "student_only_transfer": arms["student_only_transfer"]["success_rate"],
            "met": arms["atlas_frozen_transfer"]["success_rate"] > arms["student_only_transfer"]["success_rate"],
        },
    }


def _report(results: dict[str, Any]) -> str:
    lines = [
        f"# atlas bench: {results['student']} student, {results['teacher']} teacher",
        "",
        f"World `{results['world']}`, seed {results['seed']}: {results['training_questions']} questions from the training incidents; "
        f"held-out incident {results['holdout_incident']} ({results['holdout_questions']} questions) for transfer. {results['seconds']} s.",
        "",
        arms_table(results["arms"]),
        "",
        "## Targets",
        "",
    ]
    for name, check in results["targets"].items():
        figures = ", ".join(f"{k} = {v:.4f}" if isinstance(v, float) else f"{k} = {v}" for k, v in check.items() if k != "met")
        lines.append(f"- {name}: {'met' if check['met'] else 'NOT met'} ({figures})")
    lines += ["", "Plots: `success_cost.png` (success and cost per episode), `lane_mix.png`, `transfer.png`.", ""]
    return "\n".join(lines)
