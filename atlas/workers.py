"""One episode worker: a compiled graph with its checkpointer, the agents, the memory, and a way to make
episodes. The runner drives N of them at once in threads, or one per Ray actor (`atlas/ray_pool.py`).

A job is plain data (which question, its episode and thread ids, and for a remote worker the lane
statistics to choose from), and so is the record it returns: both cross process boundaries as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atlas.agents.base import Episode, Student, Teacher
from atlas.config import AgentSettings
from atlas.graph import RunContext, build_graph
from atlas.llm.ledger import CallLedger
from atlas.llm.meter import Meter
from memory.store import MemoryStore
from policies.supervision import LaneBandit


@dataclass(frozen=True)
class EpisodeJob:
    index: int
    episode_id: str  # what records and memory name it by
    thread_id: str  # its checkpoints' thread (the episode id, prefixed by the run id on a shared database)
    task_id: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSettings:
    """What every worker of a run needs to know about it (plain data)."""

    lane: str
    learn: bool
    scope: tuple[str, ...]
    seed: int


class EpisodeWorker:
    """Runs jobs through one graph; thread-safe (each run has its own context and call ledger)."""

    def __init__(
        self, student: Student, teacher: Teacher, settings: AgentSettings, run: RunSettings, memory: MemoryStore | None,
        make_episode: Callable[[EpisodeJob], Episode], checkpointer: Any, meter: Meter | None = None,
    ) -> None:
        self.student, self.teacher, self.settings, self.run_settings = student, teacher, settings, run
        self.memory, self.make_episode, self.meter = memory, make_episode, meter
        self.graph = build_graph(checkpointer)

    def run(self, job: EpisodeJob, bandit: LaneBandit) -> dict[str, Any]:
        """The episode's record; a job cut off earlier continues from its last checkpoint, a finished one is not run again."""
        episode = self.make_episode(job)
        context = RunContext(
            episode=episode, student=self.student, teacher=self.teacher, settings=self.settings, bandit=bandit,
            memory=self.memory, scope=self.run_settings.scope, learn=self.run_settings.learn and self.memory is not None,
            meter=self.meter, calls=CallLedger(self.settings.max_llm_calls),
        )
        config = {"configurable": {"thread_id": job.thread_id}}
        snapshot = self.graph.get_state(config)
        started = snapshot.created_at is not None
        # `tasks`, not `next`: a process killed after a node's writes were stored but before the checkpoint
        # that follows them leaves that node out of `next` (it has writes) though it is still to be committed
        if started and not snapshot.tasks:
            state = snapshot.values  # finished before its record was written: do not run it twice
        else:
            # an episode cut off mid-way continues from its last checkpoint (a node whose writes were stored
            # is not run again); a new one starts from the top;
            # "sync": each checkpoint is stored before the next node runs (no writer thread left on Ctrl-C)
            payload = None if started else {"episode_id": job.episode_id, "task_id": job.task_id, "steps": []}
            with context.calls.active():  # type: ignore[union-attr]
                state = self.graph.invoke(payload, config, context=context, durability="sync")
        return episode_record(job, state, context.calls)


def episode_record(job: EpisodeJob, state: dict[str, Any], calls: CallLedger | None) -> dict[str, Any]:
    steps = state.get("steps", [])
    return {
        "episode": job.episode_id,
        "index": job.index,
        "question": job.task_id,
        "meta": job.meta,
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
        "llm_calls": calls.calls if calls is not None else 0,
        "prompt_tokens": dict(calls.prompt_tokens) if calls is not None else {},  # per model, this episode
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
