"""`atlas bench standin`: the whole LLM-agent path measured over HTTP with the stand-in model.

A fake OpenAI-compatible server on loopback answers with `StandInModel` (student and teacher are two
model names on it); the LLM agents run the adaptive loop with memory and learning through the real
`openai` client. The server counts prompt tokens with a real BPE tokenizer when one is at hand (the
bundled SmolLM2's), else about four characters a token. The figures are those of the protocol: prompt
tokens per call and per episode, calls per episode, the judge's agreement with the grader, success
and cost per third. They describe our agents' bookkeeping, not a real model's ability.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atlas.agents.llm import LLMStudent, LLMTeacher
from atlas.config import AtlasSettings
from atlas.llm import Meter, make_llm
from atlas.runner import RunSpec, read_records, run_episodes
from benchmarks.fake_openai import FakeOpenAIServer
from benchmarks.investigation.arms import inputs_for
from benchmarks.investigation.database import open_database
from benchmarks.investigation.episodes import select_questions, world_paths
from benchmarks.investigation.procedural import SCOPE_TAG
from benchmarks.investigation.question_files import read_questions
from benchmarks.investigation.standin import StandInModel
from benchmarks.investigation.tables import schema_summary
from memory.store import MemoryStore

STUDENT_MODEL, TEACHER_MODEL = "standin-student", "standin-teacher"
DEEP_STUDENT = "standin-student-deep"  # a student that searches until its query budget is spent
FULL_BUDGET_PROBES = 5


def token_counter(models_dir: Path | None) -> tuple[Callable[[str], int], str]:
    """A real tokenizer (SmolLM2's BPE, if its de-quantized folder exists) or a 4-characters estimate."""
    folder = models_dir / "smollm2-135m-instruct" if models_dir else None
    if folder is not None and (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return (lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)), "SmolLM2 BPE tokenizer"
    return (lambda text: max(1, len(text) // 4)), "4 characters per token"


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "max": 0.0, "mean": 0.0}
    return {"p50": float(statistics.median(values)), "max": float(max(values)), "mean": round(float(statistics.fmean(values)), 1)}


def run_standin_bench(world: Path, out: Path, settings: AtlasSettings, episodes: int = 30, seed: int = 0, latency_s: float = 0.0,
                      progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the adaptive LLM loop against the stand-in; write and return the figures."""
    db_path, questions_path = world_paths(world)
    count, counted_by = token_counter(settings.model_cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with FakeOpenAIServer(responder=StandInModel(), count_tokens=count, latency_s=latency_s) as server:
        from pydantic import SecretStr

        endpoint = settings.openai.model_copy(update={"base_url": server.url, "api_key": SecretStr(server.api_key)})
        local = settings.model_copy(update={"openai": endpoint})
        meter = Meter()
        student = LLMStudent(make_llm(f"openai:{STUDENT_MODEL}", local, meter=meter, cache=False), schema_summary(), local.agents)
        teacher = LLMTeacher(make_llm(f"openai:{TEACHER_MODEL}", local, meter=meter, cache=False), schema_summary(), local.agents)
        questions = select_questions(read_questions(questions_path), limit=episodes, seed=seed)
        memory = MemoryStore.open(str(out / "memory.sqlite"), index_dir=out / "indexes")
        try:
            with open_database(str(db_path)) as database:
                spec = RunSpec("standin", memory=memory, scope=(SCOPE_TAG,), seed=seed, extra={"world": str(world)})
                run = run_episodes(inputs_for(questions, database), student, teacher, local.agents, spec, out / "run", meter=meter, progress=progress)
        finally:
            memory.close()
        calls = list(server.calls)
        full_budget = full_budget_attempts(db_path, read_questions(questions_path), local, seed)
    records = read_records(out / "run" / "episodes.jsonl")
    results = figures(run, records, calls, local, counted_by)
    results["student_attempts_at_full_budget"] = {"attempts": full_budget, **percentiles([a["prompt_tokens"] for a in full_budget if a["queries"] >= local.agents.student_steps])}
    results["targets"]["student_attempt_at_15_queries_under_30k"] = all(
        a["prompt_tokens"] < 30_000 for a in full_budget if a["queries"] >= local.agents.student_steps
    ) if any(a["queries"] >= local.agents.student_steps for a in full_budget) else None
    results["seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report(results), encoding="utf-8")
    return results


def full_budget_attempts(db_path: Path, questions: list, settings: AtlasSettings, seed: int) -> list[dict[str, Any]]:
    """Student attempts that spend the whole query budget (a student model that searches deep, on the
    hardest questions): the prompt tokens of a 15-query attempt, measured rather than extrapolated."""
    from atlas.agents.base import Tool
    from benchmarks.investigation.episodes import SocEpisode

    hard = [q for q in select_questions(questions, seed=seed) if q.difficulty >= 3][:FULL_BUDGET_PROBES]
    meter = Meter()
    student = LLMStudent(make_llm(f"openai:{DEEP_STUDENT}", settings, meter=meter, cache=False), schema_summary(), settings.agents)
    out = []
    with open_database(str(db_path)) as database:
        for question in hard:
            before = meter.totals().prompt_tokens
            episode = SocEpisode(question, database)
            tool = Tool(episode, "student", settings.agents.student_steps)
            student.attempt(episode.task, tool, None)
            out.append({"question": question.id, "queries": len(tool.steps), "prompt_tokens": meter.totals().prompt_tokens - before})
    return out


def figures(run: dict[str, Any], records: list[dict[str, Any]], calls: list[tuple[str, int, int]], settings: AtlasSettings, counted_by: str) -> dict[str, Any]:
    agents = settings.agents
    budgets = {STUDENT_MODEL: agents.student_prompt_tokens, TEACHER_MODEL: agents.teacher_prompt_tokens}
    per_call = {model: [p for m, p, _ in calls if m == model] for model in budgets}
    per_episode = {model: [r["prompt_tokens"].get(model, 0) for r in records] for model in budgets}
    full_student = [r["prompt_tokens"].get(STUDENT_MODEL, 0) for r in records if r["queries"]["student"] >= agents.student_steps]
    over = [(m, p) for m, p, _ in calls if p > budgets.get(m, 10**9)]
    phases = {name: {"success_rate": ph["success_rate"], "cost_per_task": ph["cost_per_task"], "queries_per_task": ph["queries_per_task"]} for name, ph in run["phases"].items()}
    return {
        "episodes": run["episodes"],
        "tokens_counted_by": counted_by,
        "protocol": run.get("protocol", {}),
        "prompt_tokens_per_call": {m: percentiles(v) for m, v in per_call.items()},
        "calls_over_budget": len(over),
        "llm_calls_per_episode": percentiles([r["llm_calls"] for r in records]),
        "llm_call_cap": agents.max_llm_calls,
        "prompt_tokens_per_episode": {m: percentiles(v) for m, v in per_episode.items()},
        "student_episodes_at_full_query_budget": {"n": len(full_student), **percentiles(full_student)},
        "judge_agreement": run.get("judge_agreement"),
        "model_errors": run.get("model_errors", 0),
        "success_rate": run["success_rate"],
        "cost_per_task": run["cost_per_task"],
        "phases": phases,
        "lane_mix": run["lane_mix"],
        "targets": {
            "no_call_over_its_budget": not over,
            "calls_per_episode_within_cap": all(r["llm_calls"] <= agents.max_llm_calls for r in records),
            "student_episode_at_15_queries_under_30k": (max(full_student) < 30_000) if full_student else None,  # within the run
            "teacher_episode_p50_under_80k": percentiles(per_episode[TEACHER_MODEL])["p50"] < 80_000,
        },
    }


def report(results: dict[str, Any]) -> str:
    call, episode = results["prompt_tokens_per_call"], results["prompt_tokens_per_episode"]
    lines = [
        "# LLM agents over HTTP with the stand-in model",
        "",
        f"{results['episodes']} episodes, learning on; tokens counted by the server with the {results['tokens_counted_by']}; {results['seconds']} s.",
        "",
        "| figure | student | teacher |",
        "|---|---|---|",
        f"| prompt tokens per call, p50 / max | {call[STUDENT_MODEL]['p50']:.0f} / {call[STUDENT_MODEL]['max']:.0f} | {call[TEACHER_MODEL]['p50']:.0f} / {call[TEACHER_MODEL]['max']:.0f} |",
        f"| prompt tokens per episode, p50 / max | {episode[STUDENT_MODEL]['p50']:.0f} / {episode[STUDENT_MODEL]['max']:.0f} | {episode[TEACHER_MODEL]['p50']:.0f} / {episode[TEACHER_MODEL]['max']:.0f} |",
        "",
        f"LLM calls per episode: p50 {results['llm_calls_per_episode']['p50']:.0f}, max {results['llm_calls_per_episode']['max']:.0f} (cap {results['llm_call_cap']}); "
        f"calls over their prompt budget: {results['calls_over_budget']}; judge agreement {results['judge_agreement']}; model errors {results['model_errors']}.",
        "",
        "| third | success | cost/task ($) | queries/task |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {ph['success_rate']:.3f} | {ph['cost_per_task']:.4f} | {ph['queries_per_task']:.1f} |" for name, ph in results["phases"].items()]
    probe = results.get("student_attempts_at_full_budget", {})
    if probe.get("attempts"):
        full = [a for a in probe["attempts"] if a["prompt_tokens"] and a["queries"] >= max(a["queries"] for a in probe["attempts"])]
        lines += ["", f"Student attempts that ran the whole query budget ({len(full)} of {len(probe['attempts'])} probes on hard questions): "
                      f"prompt tokens p50 {probe['p50']:.0f}, max {probe['max']:.0f}."]
    lines += ["", "Targets: " + ", ".join(f"{k}: {v}" for k, v in results["targets"].items()), ""]
    return "\n".join(lines)
