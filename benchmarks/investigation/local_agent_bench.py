"""`atlas bench local-agent`: the bundled SmolLM2 driving the LLM student, decoding under the action schema.

Measures what structured decoding buys a 135M model: the share of replies that are a valid action,
seconds per step, and success on the small world with and without memory notes (notes from a
memory store a run learned, e.g. the one `atlas bench standin` leaves behind). Success near zero is the
expected, honest result for a model this small; validity is the point.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from atlas.agents.llm import LLMStudent, LLMTeacher
from atlas.config import AtlasSettings
from atlas.llm import Meter, make_llm
from atlas.runner import RunSpec, read_records, run_episodes
from benchmarks.investigation.arms import inputs_for
from benchmarks.investigation.database import open_database
from benchmarks.investigation.episodes import select_questions, world_paths
from benchmarks.investigation.procedural import SCOPE_TAG
from benchmarks.investigation.question_files import read_questions
from benchmarks.investigation.tables import schema_summary
from memory.store import MemoryStore


def run_local_agent_bench(world: Path, out: Path, settings: AtlasSettings, episodes: int = 6, seed: int = 0, memory: Path | None = None,
                          progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    db_path, questions_path = world_paths(world)
    questions = select_questions(read_questions(questions_path), limit=episodes, seed=seed)
    meter = Meter()
    local = make_llm("local", settings, meter=meter, cache=False)
    student, teacher = LLMStudent(local, schema_summary(), settings.agents), LLMTeacher(local, schema_summary(), settings.agents)
    arms: dict[str, Any] = {}
    out.mkdir(parents=True, exist_ok=True)
    for arm, path in (("without_memory", None), ("with_memory", memory)):
        if arm == "with_memory" and path is None:
            continue
        store = MemoryStore.open(str(path), create=False, index_dir=out / "indexes") if path else None
        started = time.perf_counter()
        try:
            with open_database(str(db_path)) as database:
                spec = RunSpec(arm, lane="auto", learn=False, memory=store, scope=(SCOPE_TAG,), seed=seed)
                run = run_episodes(inputs_for(questions, database), student, teacher, settings.agents, spec, out / arm, meter=meter,
                                   progress=partial(progress, arm) if progress else None)
        finally:
            if store is not None:
                store.close()
        records = read_records(out / arm / "episodes.jsonl")
        replies = [r["replies"] for r in records if r.get("replies")]
        actions, invalid = sum(r["actions"] for r in replies), sum(r["invalid"] for r in replies)
        steps = sum(r["queries"]["student"] for r in records) + len(records)  # every query, and the answer
        arms[arm] = {
            "episodes": len(records), "success_rate": run["success_rate"], "mean_reward": run["mean_reward"],
            "valid_action_rate": actions / (actions + invalid) if actions + invalid else None, "actions": actions, "invalid_replies": invalid,
            "seconds_per_step": round((time.perf_counter() - started) / max(1, steps), 2), "queries_per_task": run["queries_per_task"],
        }
    results = {"world": str(world), "model": local.model, "episodes": episodes, "seed": seed, "decoding": local.capabilities.how, "arms": arms}
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return results
