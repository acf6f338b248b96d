"""`atlas bench atlas`: the same questions through several arms, to show what memory and lanes buy.

student_only (student alone, no memory), teacher_only (every task escalated; its investigations are
distilled into skills for the leave-one-template-out folds), atlas_no_memory (adaptive lanes without
memory), atlas (adaptive lanes, learning into memory), atlas_frozen_transfer (the memory atlas learned
on the training incidents, frozen, on a held-out incident, student alone) against
student_only_transfer, and loto_<template> (per attack template, a frozen student with the skills
learned on the other templates only, on that template's questions; see `generalisation.py`).

Cost is counted in queries first (a student's and a teacher's count the same); dollars under the
declared prices are a second view.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from atlas.agents.base import Student, Teacher
from atlas.config import AgentSettings
from atlas.llm.meter import Meter
from atlas.runner import EpisodeInput, RunSpec, read_records, run_episodes
from atlas.run_summary import thirds
from benchmarks.investigation.database import ReadOnlyDatabase, open_database
from benchmarks.investigation.episodes import SocEpisode, select_questions, world_paths
from benchmarks.investigation.generalisation import fold_questions, fold_tag, pair_accounting, success_by_difficulty, tag_folds
from benchmarks.investigation.models import Question
from benchmarks.investigation.procedural import SCOPE_TAG
from benchmarks.investigation.question_files import read_questions
from benchmarks.reports import arms_table, plot_arms, plot_lane_mix
from memory.store import MemoryStore

ARMS = ("student_only", "teacher_only", "atlas_no_memory", "atlas", "atlas_frozen_transfer", "student_only_transfer")
REQUIRED = ("student_only", "teacher_only", "atlas", "atlas_frozen_transfer", "student_only_transfer")  # what the targets read
CLEARLY_MORE = 0.10  # "clearly more" on unseen pairs: at least 10 points of success above the student alone


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


def inputs_for(questions: list[Question], database: ReadOnlyDatabase) -> list[EpisodeInput]:
    return [
        EpisodeInput(make=partial(SocEpisode, q, database), task_id=q.id, meta={"difficulty": q.difficulty, "incident": q.incident, "split": q.split})
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
    arms: Sequence[str] = ARMS,
    loto_questions: int | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run the arms into out/<arm>/ and the folds into out/loto_<template>/; write out/results.json,
    report.md and the plots. `loto_questions` caps the questions per held-out template."""
    unknown = sorted(set(arms) - set(ARMS))
    if unknown or not set(REQUIRED) <= set(arms):
        raise ValueError(f"arms {unknown or list(arms)}: choose from {', '.join(ARMS)}; {', '.join(REQUIRED)} are always run")
    db_path, questions_path = world_paths(world)
    plan = plan_questions(read_questions(questions_path), seed, episodes, holdout)
    out.mkdir(parents=True, exist_ok=True)
    learned = memory_path or out / "atlas" / "memory.sqlite"
    skills = out / "teacher_only" / "memory.sqlite"
    started = time.perf_counter()
    figures: dict[str, dict[str, Any]] = {}
    with open_database(str(db_path)) as database:
        training, held_out = inputs_for(plan.training, database), inputs_for(plan.holdout, database)
        specs = [
            ("student_only", training, RunSpec("student_only", lane="auto", learn=False, seed=seed, resume=resume), None),
            ("teacher_only", training, RunSpec("teacher_only", lane="escalate", learn=True, seed=seed, resume=resume), skills),
            ("atlas_no_memory", training, RunSpec("atlas_no_memory", lane="adaptive", learn=False, seed=seed, resume=resume), None),
            ("atlas", training, RunSpec("atlas", lane="adaptive", learn=True, seed=seed, resume=resume), learned),
            ("atlas_frozen_transfer", held_out, RunSpec("atlas_frozen_transfer", lane="auto", learn=False, seed=seed, resume=resume), learned),
            ("student_only_transfer", held_out, RunSpec("student_only_transfer", lane="auto", learn=False, seed=seed, resume=resume), None),
        ]
        for name, inputs, spec, memory_file in specs:
            if name not in arms:
                continue
            store = open_memory(memory_file) if memory_file else None
            try:
                spec.memory, spec.scope, spec.workers = store, (SCOPE_TAG,), workers
                spec.extra = {"questions": len(inputs)}
                callback = (lambda record, arm=name: progress(arm, record)) if progress else None
                figures[name] = run_episodes(inputs, student, teacher, settings, spec, out / name, meter=meter, progress=callback, should_stop=should_stop)
            finally:
                if store is not None:
                    store.close()
        loto = _leave_one_template_out(plan.training, database, out, skills, student, teacher, settings, open_memory, seed, resume, meter, progress, should_stop, loto_questions)
    records = {name: read_records(out / name / "episodes.jsonl") for name in arms}
    by_id = {q.id: q for q in [*plan.training, *plan.holdout]}
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
        "arms": {name: _arm_figures(arm) for name, arm in figures.items()},
        "last_third": _last_third(records),
        "leave_one_template_out": loto,
        "pairs": pair_accounting(records["atlas"], records["student_only"], by_id),
    }
    results["targets"] = targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    training_arms: dict[str, list[dict[str, Any]]] = {name: records[name] for name in ("student_only", "teacher_only", "atlas_no_memory", "atlas") if name in records}
    plot_arms(training_arms, out / "success_cost.png")
    plot_arms({name: records[name] for name in ("atlas_frozen_transfer", "student_only_transfer")}, out / "transfer.png", window=15)
    plot_lane_mix(records["atlas"], out / "lane_mix.png", title="atlas: lane mix over time")
    (out / "report.md").write_text(_report(results), encoding="utf-8")
    return results


def _leave_one_template_out(
    training: list[Question], database, out: Path, skills: Path, student: Student, teacher: Teacher, settings: AgentSettings,
    open_memory: Callable[[Path], MemoryStore], seed: int, resume: bool, meter: Meter | None,
    progress: Callable[[str, dict[str, Any]], None] | None, should_stop: Callable[[], bool] | None, limit: int | None,
) -> dict[str, Any]:
    """Per attack template: the frozen student with the skills of the other templates, against the
    student alone (the student_only arm's episodes on the same questions)."""
    templates = {q.id: q.template for q in training if q.template}
    folds = sorted(set(templates.values()))
    alone = {r["question"]: r for r in read_records(out / "student_only" / "episodes.jsonl")}
    result: dict[str, Any] = {"folds": {}}
    store = open_memory(skills)
    try:
        held = tag_folds(store, templates, folds, (SCOPE_TAG,))
        for template in folds:
            questions = fold_questions(training, template, limit)
            name = f"loto_{template}"
            spec = RunSpec(name, lane="auto", learn=False, memory=store, scope=(SCOPE_TAG, fold_tag(template)), seed=seed, resume=resume)
            spec.extra = {"questions": len(questions), "held_out_template": template, "skills": held[template]}
            callback = (lambda record, arm=name: progress(arm, record)) if progress else None
            run_episodes(inputs_for(questions, database), student, teacher, settings, spec, out / name, meter=meter, progress=callback, should_stop=should_stop)
            with_memory = read_records(out / name / "episodes.jsonl")
            result["folds"][template] = {
                "skills": held[template],
                "memory": success_by_difficulty(with_memory),
                "student_only": success_by_difficulty([alone[r["question"]] for r in with_memory if r["question"] in alone]),
            }
    finally:
        store.close()
    folds_done = result["folds"].values()
    result["memory_success"] = sum(f["memory"]["success_rate"] for f in folds_done) / len(folds) if folds else 0.0
    result["student_only_success"] = sum(f["student_only"]["success_rate"] for f in folds_done) / len(folds) if folds else 0.0
    return result


def _last_third(records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The atlas arm's last third against the teacher alone on the very same questions."""
    last = thirds(records["atlas"])["last"]
    asked = {r["question"] for r in last}
    teacher = [r for r in records["teacher_only"] if r["question"] in asked]

    def figures(rs: list[dict[str, Any]]) -> dict[str, float]:
        n = len(rs) or 1
        return {
            "episodes": len(rs),
            "success_rate": sum(bool(r["success"]) for r in rs) / n,
            "queries_per_task": sum(r["queries"]["student"] + r["queries"]["teacher"] for r in rs) / n,
            "cost_per_task": sum(r["cost"] for r in rs) / n,
        }

    return {"atlas": figures(last), "teacher_only": figures(teacher)}


def _arm_figures(arm: dict[str, Any]) -> dict[str, Any]:
    keys = ("episodes", "success_rate", "mean_reward", "cost_per_task", "tokens_per_task", "queries_per_task", "lane_mix", "phases", "by_difficulty", "bandit")
    return {k: arm[k] for k in keys if k in arm}


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's checks, each with the figures it compares (cost in queries per task)."""
    arms, last, loto, pairs = results["arms"], results["last_third"], results["leave_one_template_out"], results["pairs"]
    atlas, teacher = last["atlas"], last["teacher_only"]
    first = arms["atlas"]["phases"]["first"]["success_rate"]
    ratio = atlas["queries_per_task"] / teacher["queries_per_task"] if teacher["queries_per_task"] else None
    return {
        "last_third_success_within_1pt_of_teacher": {
            "atlas_last_third": atlas["success_rate"], "teacher_only_same_questions": teacher["success_rate"],
            "met": atlas["success_rate"] >= teacher["success_rate"] - 0.01,
        },
        "last_third_queries_at_most_40pct_of_teacher": {
            "atlas_last_third": atlas["queries_per_task"], "teacher_only_same_questions": teacher["queries_per_task"], "ratio": ratio,
            "dollar_ratio": atlas["cost_per_task"] / teacher["cost_per_task"] if teacher["cost_per_task"] else None,
            "met": ratio is not None and ratio <= 0.40,
        },
        "success_rises_5_points": {"first_third": first, "last_third": atlas["success_rate"], "met": atlas["success_rate"] - first >= 0.05},
        "leave_one_template_out_beats_student_by_20_points": {
            "memory": loto["memory_success"], "student_only": loto["student_only_success"],
            "met": loto["memory_success"] - loto["student_only_success"] >= 0.20,
        },
        "unseen_pairs_student_solves_half": {
            "with_memory": pairs["student_solved_unseen"], "student_alone": pairs["student_alone_unseen"], "episodes": pairs["episodes"]["unseen"],
            "met": pairs["student_solved_unseen"] >= 0.5 and pairs["student_solved_unseen"] >= pairs["student_alone_unseen"] + CLEARLY_MORE,
        },
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
        *_loto_lines(results["leave_one_template_out"]),
        *_pair_lines(results["pairs"]),
        "## Targets",
        "",
    ]
    for name, check in results["targets"].items():
        figures = ", ".join(f"{k} = {v:.4f}" if isinstance(v, float) else f"{k} = {v}" for k, v in check.items() if k != "met")
        lines.append(f"- {name}: {'met' if check['met'] else 'NOT met'} ({figures})")
    lines += ["", "Plots: `success_cost.png` (success and cost per episode), `lane_mix.png`, `transfer.png`.", ""]
    return "\n".join(lines)


def _loto_lines(loto: dict[str, Any]) -> list[str]:
    folds = loto["folds"]
    levels = sorted({d for f in folds.values() for d in f["memory"]["by_difficulty"]})
    lines = [
        "## Leave one attack template out",
        "",
        "Per template: the frozen student with the skills learned on the other templates (`memory`) against the student alone, "
        "on the template's questions; success overall and per difficulty (hops).",
        "",
        "| held-out template | skills | questions | memory | student alone | " + " | ".join(f"{d} hop(s): memory / alone" for d in levels) + " |",
        "|---|---|---|---|---|" + "---|" * len(levels),
    ]
    for template, fold in folds.items():
        cells = [
            f"{fold['memory']['by_difficulty'].get(d, {}).get('success_rate', 0):.2f} / {fold['student_only']['by_difficulty'].get(d, {}).get('success_rate', 0):.2f}"
            for d in levels
        ]
        lines.append(f"| {template} | {fold['skills']} | {fold['memory']['episodes']} | {fold['memory']['success_rate']:.3f} | {fold['student_only']['success_rate']:.3f} | " + " | ".join(cells) + " |")
    lines += [f"| mean | | | {loto['memory_success']:.3f} | {loto['student_only_success']:.3f} |" + " |" * len(levels), ""]
    return lines


def _pair_lines(pairs: dict[str, Any]) -> list[str]:
    return [
        "## Seen and unseen (start, end) pairs in the atlas arm",
        "",
        f"{pairs['episodes']['unseen']} episodes asked a pair never seen before in the run, {pairs['episodes']['seen']} a seen one; "
        f"solved episodes: {pairs['solved_share']['unseen']:.1%} unseen, {pairs['solved_share']['seen']:.1%} seen. On the unseen ones the "
        f"arm succeeds {pairs['success_rate']['unseen']:.1%}, the student (with memory) solves {pairs['student_solved_unseen']:.1%}, "
        f"the student alone {pairs['student_alone_unseen']:.1%} of the same questions.",
        "",
    ]
