"""Run episodes through the graph: per-episode JSONL as they finish, checkpoints, resume, results.json."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from atlas.agents.base import Episode, Student, Teacher
from atlas.config import AgentSettings
from atlas.errors import AtlasError
from atlas.graph import RunContext, build_graph
from atlas.llm.ledger import CallLedger
from atlas.llm.meter import Meter
from atlas.run_summary import summarize
from memory.store import MemoryStore
from policies.supervision import LANES, LaneBandit

EPISODES_FILE, RESULTS_FILE, CHECKPOINTS_FILE, RUN_FILE = "episodes.jsonl", "results.json", "checkpoints.sqlite", "run.json"
LANE_MODES = ("adaptive", *LANES)


class RunStopped(Exception):
    """The run was asked to stop between episodes; `finished` episodes are saved."""

    def __init__(self, finished: int) -> None:
        super().__init__(f"stopped after {finished} episodes")
        self.finished = finished


@dataclass
class RunSpec:
    name: str
    lane: str = "adaptive"
    learn: bool = True
    memory: MemoryStore | None = None
    scope: tuple[str, ...] = ()
    seed: int = 0
    resume: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # written into results.json as is

    def __post_init__(self) -> None:
        if self.lane not in LANE_MODES:
            raise AtlasError(f"unknown lane {self.lane!r}; choose one of {', '.join(LANE_MODES)}")


@dataclass(frozen=True)
class EpisodeInput:
    """A benchmark's episode plus what the report may say about it (difficulty, split, ...; no answers)."""

    make: Callable[[], Episode]
    task_id: str
    meta: dict[str, Any] = field(default_factory=dict)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Finished episodes of a run folder, each once (a line re-written after a crash counts once)."""
    if not path.is_file():
        return []
    records: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise AtlasError(f"{path}, line {number}: not valid JSON; the run folder is damaged (move the line away to resume)") from None
            records[record["episode"]] = record
    return sorted(records.values(), key=lambda r: r["index"])


def run_episodes(
    inputs: Iterable[EpisodeInput],
    student: Student,
    teacher: Teacher,
    settings: AgentSettings,
    spec: RunSpec,
    out: Path,
    meter: Meter | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run every episode in order; returns (and writes) results.json's content.

    `should_stop` is asked before each episode (e.g. after a Ctrl-C): the run then ends cleanly with
    RunStopped, every finished episode saved, and continues later with `resume=True`."""
    protocol = preflight_agents(student, teacher)  # a model that cannot answer stops the run here, before any write
    out.mkdir(parents=True, exist_ok=True)
    episodes_path = out / EPISODES_FILE
    done = read_records(episodes_path)
    if done and not spec.resume:
        raise AtlasError(f"{out} already holds a run ({len(done)} episodes); pass --resume to continue it, or choose another --out")
    _check_same_run(out, spec, student, teacher, settings, resuming=bool(done))
    bandit = LaneBandit(lam=settings.lam, explore=settings.explore, forced=None if spec.lane == "adaptive" else spec.lane, seed=spec.seed)  # type: ignore[arg-type]
    for record in done:  # replay the lane choices too, so the bandit's random stream continues exactly
        if not bandit.forced:
            bandit.choose(record["context"])
            if record["signal"] is not None and not record.get("model_error"):
                bandit.update(record["context"], record["lane"], record["signal"], record["cost"])
    finished = {r["episode"] for r in done}
    connection = sqlite3.connect(out / CHECKPOINTS_FILE, check_same_thread=False)
    try:
        graph = build_graph(SqliteSaver(connection))
        with episodes_path.open("a", encoding="utf-8") as sink:
            for index, item in enumerate(inputs):
                episode_id = f"{spec.name}:{index:05d}:{item.task_id}"
                if episode_id in finished:
                    continue
                if should_stop is not None and should_stop():
                    raise RunStopped(len(done))
                record = _run_one(graph, item, index, episode_id, student, teacher, settings, spec, bandit, meter)
                sink.write(json.dumps(record, sort_keys=True) + "\n")
                sink.flush()
                graph.checkpointer.delete_thread(episode_id)  # the record is the durable copy now
                done.append(record)
                if progress:
                    progress(record)
    finally:
        connection.close()
    results = {
        "run": spec.name, "lane": spec.lane, "learn": spec.learn, "memory": spec.memory is not None, "seed": spec.seed, **spec.extra,
        **summarize(done), "bandit": bandit.to_dict(), **({"protocol": protocol} if protocol else {}),
    }
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return results


def _run_one(graph, item: EpisodeInput, index: int, episode_id: str, student, teacher, settings, spec: RunSpec, bandit, meter) -> dict[str, Any]:
    episode = item.make()
    totals = meter.totals() if meter else None
    prompt_before = {model: t.prompt_tokens for model, t in totals.by_model.items()} if totals else {}
    context = RunContext(
        episode=episode, student=student, teacher=teacher, settings=settings, bandit=bandit, memory=spec.memory,
        scope=spec.scope, learn=spec.learn, meter=meter,
        meter_start=totals.cost_usd if totals else 0.0, tokens_start=totals.total_tokens if totals else 0,
        calls=CallLedger(settings.max_llm_calls),
    )
    config = {"configurable": {"thread_id": episode_id}}
    snapshot = graph.get_state(config)
    if snapshot.values and not snapshot.next:
        state = snapshot.values  # finished before its record was written: do not run it twice
    else:
        # an episode cut off mid-way continues from its last checkpoint; a new one starts from the top;
        # "sync": each checkpoint is on disk before the next node runs (no writer thread left on Ctrl-C)
        payload = None if snapshot.next else {"episode_id": episode_id, "task_id": item.task_id, "steps": []}
        with context.calls.active():  # type: ignore[union-attr]
            state = graph.invoke(payload, config, context=context, durability="sync")
    steps = state.get("steps", [])
    after = meter.totals().by_model if meter else {}
    prompt_tokens = {model: t.prompt_tokens - prompt_before.get(model, 0) for model, t in after.items() if t.prompt_tokens > prompt_before.get(model, 0)}
    return {
        "episode": episode_id,
        "index": index,
        "question": item.task_id,
        "meta": item.meta,
        "lane": state["lane"],
        "context": state["context"],
        "solved_by": state.get("solved_by"),
        "attempts": state.get("attempts", 0),
        "answer": state.get("answer"),
        "reason": state.get("reason"),  # why there is no answer (a model error says which)
        "success": bool(state["success"]),
        "reward": state["reward"],
        "signal": state["signal"],
        "judgment": state.get("judgment"),
        "model_error": bool(state.get("model_error")),
        "llm_calls": context.calls.calls if context.calls is not None else 0,
        "prompt_tokens": prompt_tokens,  # per model, this episode
        "replies": (state.get("route") or {}).get("replies"),  # LLM agents: valid actions, invalid replies, cut-off ones
        "tokens": state.get("tokens", 0),
        "queries": {"student": sum(s["actor"] == "student" for s in steps), "teacher": sum(s["actor"] == "teacher" for s in steps)},
        "cost": state["cost"],
        "seconds": state.get("seconds", 0.0),
        "pamphlets_used": state.get("used", []),
        "pamphlets_written": state.get("written", []),
        "pamphlets_merged": state.get("merged", []),
        "pamphlets_rejected": state.get("rejected", []),
        "pamphlets_pruned": state.get("pruned", []),
        "retrieved": [h["id"] for h in state.get("hits", [])],
    }


def preflight_agents(*agents: Student | Teacher) -> dict[str, dict[str, str]]:
    """Each LLM agent's model answers (or the run stops with a configuration error); returns how each is spoken to."""
    protocol: dict[str, dict[str, str]] = {}
    for role, agent in zip(("student", "teacher"), agents):
        check = getattr(agent, "preflight", None)
        if check is not None:
            check()
            protocol[role] = agent.protocol  # type: ignore[union-attr]
    return protocol


def _check_same_run(out: Path, spec: RunSpec, student: Student, teacher: Teacher, settings: AgentSettings, resuming: bool) -> None:
    """A resumed run must be the same run: same lane, learning mode, seed, agents and settings."""
    identity = {
        "lane": spec.lane, "learn": spec.learn, "memory": spec.memory is not None, "seed": spec.seed,
        "student": student.name, "teacher": teacher.name, "settings": settings.model_dump(),
    }
    path = out / RUN_FILE
    if resuming and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(key for key in identity if before.get(key) != identity[key])
        if changed:
            raise AtlasError(f"{out} holds a run with other {', '.join(changed)}; resume it with the same options, or choose another --out")
    path.write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n", encoding="utf-8")
