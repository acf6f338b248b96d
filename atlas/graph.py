"""One episode as a LangGraph StateGraph: retrieve -> lane -> (review) -> student -> (validate, retry)
-> submit -> score -> lesson -> distil -> record. Escalated tasks go to the teacher instead of the student.

Nodes are small functions of the typed state plus a per-episode runtime context (agents, memory,
bandit, the episode's sandbox); control flow lives in the edges. The state holds only plain data,
so the checkpointer (SQLite, or PostgreSQL beside a shared memory) can save it after every node and an
interrupted run can resume. A node that was cut off runs again on resume, so every side effect is
idempotent: the teacher's lesson is checkpointed (`lesson`) before anything is written (`distil`),
a use is recorded once per (pamphlet, episode), and a lesson already stored for the episode is found
again rather than written twice. The lane bandit learns from an episode when the runner records it.
"""

from __future__ import annotations

import operator
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from atlas.agents.base import Attempt, Episode, Lesson, Student, TaskView, Teacher, Tool, Validation
from atlas.config import AgentSettings
from atlas.distillation import prune, store_lesson
from atlas.errors import LLMConfigError, LLMError
from atlas.llm.ledger import CallLedger
from atlas.llm.meter import Meter
from atlas.memory_use import fitting_plans, notes_within_budget, retrieve
from memory.store import MemoryStore
from policies.supervision import LaneBandit, memory_context


class EpisodeState(TypedDict, total=False):
    episode_id: str
    task_id: str
    hits: list[dict[str, Any]]
    plans: list[dict[str, Any]]  # fitting plans, best first: {"id": pamphlet id, "plan": {...}}
    notes: list[str]
    context: str
    lane: str
    plan_index: int
    guidance: list[str]
    attempts: int
    answer: str | None
    route: dict[str, Any] | None
    reason: str | None
    validated: bool | None
    solved_by: str
    used: list[int]
    tried: Annotated[list[list[Any]], operator.add]  # [pamphlet id, reward] of plans that failed here
    steps: Annotated[list[dict[str, Any]], operator.add]
    tokens: int
    judgment: float | None
    feedback: str  # the latest verdict's rationale and guidance (for distillation)
    model_error: bool  # a model call failed for good during this episode: it teaches nothing
    reward: float
    success: bool
    signal: float | None  # None: nothing judged this episode (an unaudited auto run), so nothing is learned
    cost: float
    written: list[int]
    merged: list[int]
    rejected: list[str]
    pruned: list[int]
    lessons: list[dict[str, Any]]  # the teacher's distilled lessons (text, cue, plan, tags), before they are stored
    seconds: float
    started: float


@dataclass
class RunContext:
    """Everything nodes need that is not plain data: built by the runner for each episode."""

    episode: Episode
    student: Student
    teacher: Teacher
    settings: AgentSettings
    bandit: LaneBandit
    memory: MemoryStore | None = None
    scope: tuple[str, ...] = ()
    learn: bool = True  # write pamphlets (False = frozen: read memory, never write it)
    meter: Meter | None = None  # set when model calls are metered (their cost is this episode's ledger's)
    calls: CallLedger | None = None  # this episode's model calls: the cap, failures, tokens and dollars

    @property
    def model_failed(self) -> bool:
        return self.calls is not None and self.calls.failed

    @property
    def task(self) -> TaskView:
        return self.episode.task


def _attempt(state: EpisodeState) -> Attempt:
    return Attempt(state.get("answer"), route=state.get("route"), reason=state.get("reason"), feedback=state.get("feedback", ""))


def _model_error(state: EpisodeState, ctx: RunContext) -> bool:
    return bool(state.get("model_error")) or ctx.model_failed


def _verdict_feedback(verdict: Validation) -> str:
    return " ".join(part for part in (verdict.rationale, verdict.guidance) if part)[:1000]


def _tool_steps(tool: Tool) -> list[dict[str, Any]]:
    return [s.to_dict() for s in tool.steps]


def node_retrieve(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    if ctx.memory is None:
        return {"hits": [], "plans": [], "notes": [], "started": time.time()}
    compose = getattr(ctx.student, "compose", None)  # a student that composes one plan from many retrieved skills
    found = retrieve(ctx.memory, ctx.task, ctx.scope, ctx.settings.skill_pool_k if compose else ctx.settings.retrieve_k, ctx.student)
    if compose is not None:
        plans = compose(ctx.task, [r.to_dict() for r in found if ctx.student.plan_fits(ctx.task, r.plan)])
    else:
        plans = [{"id": r.id, "plan": r.plan, "uses": r.uses, "mean_reward": r.mean_reward} for r in fitting_plans(ctx.student, ctx.task, found, min_score=ctx.settings.plan_min_score)]
    return {
        "hits": [r.to_dict() for r in found],
        "plans": plans[: ctx.settings.max_plans],
        "notes": notes_within_budget(found, ctx.settings.memory_token_budget),
        "started": time.time(),
    }


def node_choose_lane(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    plans = state.get("plans", [])
    best = plans[0] if plans else None
    context = memory_context(best is not None, best["uses"] if best else 0, best["mean_reward"] if best else None)
    lane = runtime.context.bandit.choose(context, key=state["task_id"])  # the draw is this task's, whatever runs beside it
    return {"context": context, "lane": lane, "plan_index": 0, "attempts": 0, "guidance": []}


def node_review(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Coach lane: the teacher reviews the candidate plans and may reorder them or add guidance."""
    ctx = runtime.context
    plans = state.get("plans", [])
    review = ctx.teacher.review(ctx.task, [p["plan"] for p in plans])
    if review.plan is not None:
        chosen = next(p for p in plans if p["plan"] == review.plan)
        plans = [chosen] + [p for p in plans if p is not chosen]
    elif plans:  # the teacher rejected the proposed plan: the student does not follow it
        plans = plans[1:]
    return {"plans": plans, "guidance": [*state.get("guidance", []), review.guidance] if review.guidance else state.get("guidance", [])}


def node_student(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The student tries the current plan, then the next fitting ones, until one gives an answer."""
    ctx = runtime.context
    plans = state.get("plans", [])
    index = state.get("plan_index", 0)
    tool = Tool(ctx.episode, "student", ctx.settings.student_steps)
    candidates = plans[index:] if index < len(plans) else []
    attempt, used, failed = None, None, []
    options: Sequence[dict[str, Any] | None] = candidates if candidates else [None]  # no plan left: one try without a plan
    for offset, candidate in enumerate(options):
        plan = candidate["plan"] if candidate else None
        attempt = ctx.student.attempt(ctx.task, tool, plan, state.get("guidance", []), state.get("notes", []))
        # a composed plan's route names the skills it followed: they, not the whole plan, earn its track record
        credited = (attempt.route or {}).get("skill_ids") if candidate else None
        credited = list(credited) if credited is not None else ([candidate["id"]] if candidate else [])
        if attempt.answer:
            used = credited
            index += offset
            break
        if ctx.model_failed:  # not the plan's fault: the model failed; stop here and teach nothing
            index += len(candidates)
            break
        failed += [[pamphlet, 0.0] for pamphlet in credited]  # the plan led nowhere on this task
        if tool.left <= 0:  # the next plan would have no query left to run
            index += len(candidates)
            break
    else:
        index += len(candidates)
    assert attempt is not None  # `options` is never empty: the loop ran at least once
    return {
        "answer": attempt.answer,
        "route": attempt.route,
        "reason": attempt.reason,
        "tokens": state.get("tokens", 0) + attempt.tokens,
        "used": used or [],
        "tried": failed,
        "plan_index": index + 1,
        "attempts": state.get("attempts", 0) + 1,
        "solved_by": "student",
        "steps": _tool_steps(tool),
        "model_error": _model_error(state, ctx),
    }


def node_validate(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Paired and coach lanes: the teacher checks the answer from evidence (its own queries included)."""
    ctx = runtime.context
    tool = Tool(ctx.episode, "teacher", ctx.settings.validation_steps)
    verdict = ctx.teacher.validate(ctx.task, _attempt(state), tool)
    guidance = [*state.get("guidance", []), verdict.guidance] if verdict.guidance else state.get("guidance", [])
    update: dict[str, Any] = {
        "validated": verdict.ok, "judgment": 1.0 if verdict.ok else 0.0, "guidance": guidance, "feedback": _verdict_feedback(verdict),
        "steps": _tool_steps(tool), "model_error": _model_error(state, ctx),
    }
    if not verdict.ok:  # the plan that produced a rejected answer failed on this task
        update["tried"] = [[pamphlet, 0.0] for pamphlet in state.get("used", [])]
        update["used"] = []
    return update


def node_teacher(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Escalation (or takeover after failed retries): the teacher investigates, and its answer is then
    judged from evidence like any other (never taken as right because the teacher gave it)."""
    ctx = runtime.context
    tool = Tool(ctx.episode, "teacher", ctx.settings.teacher_steps)
    attempt = ctx.teacher.solve(ctx.task, tool, state.get("notes", []))
    check = Tool(ctx.episode, "teacher", ctx.settings.validation_steps)
    verdict = ctx.teacher.validate(ctx.task, attempt, check) if attempt.answer and not ctx.model_failed else None
    return {
        "answer": attempt.answer,
        "route": attempt.route,
        "reason": attempt.reason,
        "tokens": state.get("tokens", 0) + attempt.tokens,
        "used": [],
        "solved_by": "teacher",
        "judgment": 1.0 if verdict is not None and verdict.ok else 0.0,
        "feedback": _verdict_feedback(verdict) if verdict is not None else (attempt.reason or ""),
        "steps": _tool_steps(tool) + _tool_steps(check),
        "model_error": _model_error(state, ctx),
    }


def node_judge(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Auto lane, learning from judgment: the teacher checks the student's answer (a few cheap looks)."""
    ctx = runtime.context
    tool = Tool(ctx.episode, "teacher", ctx.settings.validation_steps)
    verdict = ctx.teacher.validate(ctx.task, _attempt(state), tool)
    return {"judgment": 1.0 if verdict.ok else 0.0, "feedback": _verdict_feedback(verdict), "steps": _tool_steps(tool), "model_error": _model_error(state, ctx)}


def node_submit(state: EpisodeState) -> dict[str, Any]:
    """The final answer of the episode (None when every agent gave up)."""
    return {"answer": state.get("answer") or None}


def node_score(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The benchmark grades every episode for the reports; the learning signal is chosen separately."""
    ctx = runtime.context
    score = ctx.episode.score(state.get("answer"), ())
    signal = score.reward if ctx.settings.signal == "reward" else state.get("judgment")
    if _model_error(state, ctx):
        signal = None  # the outcome says nothing about plans or lanes
    student_q = sum(1 for s in state.get("steps", []) if s["actor"] == "student")
    teacher_q = sum(1 for s in state.get("steps", []) if s["actor"] == "teacher")
    metered = ctx.meter is not None and ctx.calls is not None
    llm_dollars = ctx.calls.cost_usd if metered else 0.0  # type: ignore[union-attr]
    tokens = ctx.calls.tokens if metered else state.get("tokens", 0)  # type: ignore[union-attr]
    cost = student_q * ctx.settings.student_query_usd + teacher_q * ctx.settings.teacher_query_usd + llm_dollars
    return {"reward": score.reward, "success": score.success, "signal": signal, "cost": cost, "tokens": tokens, "model_error": _model_error(state, ctx)}


def _learns(state: EpisodeState, ctx: RunContext) -> bool:
    return ctx.memory is not None and ctx.learn and not _model_error(state, ctx)


def node_lesson(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The teacher distils the episode into a lesson (nothing is written yet: the lesson is checkpointed
    first, so a crash while storing it never asks the teacher again for a different one)."""
    ctx = runtime.context
    signal = state.get("signal")
    if not _learns(state, ctx) or signal is None:
        return {"lessons": [], "model_error": _model_error(state, ctx)}
    try:
        distilled = ctx.teacher.distil(ctx.task, _attempt(state), signal)
    except LLMConfigError:
        raise
    except LLMError:
        distilled = None  # the ledger noted the failure
    if ctx.model_failed:
        return {"lessons": [], "model_error": _model_error(state, ctx)}
    lessons = [distilled] if isinstance(distilled, Lesson) else list(distilled or [])  # one lesson, or one per hop (skills)
    return {"lessons": [{"text": x.text, "cue": x.cue, "plan": x.plan, "tags": list(x.tags)} for x in lessons]}


def node_distil(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write what the episode taught: uses of the plans tried, the lesson, pruning. An episode whose model
    failed teaches nothing (its outcome says nothing about the plans or the lesson). Replaying this node
    (after a crash inside it) writes nothing twice."""
    ctx = runtime.context
    nothing: dict[str, Any] = {"written": [], "merged": [], "rejected": [], "pruned": []}
    memory = ctx.memory
    if memory is None or not _learns(state, ctx):  # (_learns also requires a memory)
        return {**nothing, "model_error": _model_error(state, ctx)}
    lessons = [Lesson(found["text"], found["cue"], found.get("plan"), tuple(found.get("tags", ()))) for found in state.get("lessons") or []]
    written, merged, rejected = [], [], []
    author = ctx.teacher.name
    for pamphlet, reward in state.get("tried", []):
        memory.record_use(pamphlet, state["episode_id"], reward)
    signal = state.get("signal")
    if signal is None:  # nothing was judged: nothing to learn from this episode
        pruned = prune(memory, [p for p, _ in state.get("tried", [])], ctx.settings, author)
        return {"written": [], "merged": [], "rejected": [], "pruned": pruned}
    for lesson in lessons:
        outcome = store_lesson(memory, lesson, ctx.episode, ctx.settings, state["episode_id"], author, ctx.scope)
        written += [outcome.written] if outcome.written else []
        merged += [outcome.merged_into] if outcome.merged_into else []
        rejected += [outcome.rejected] if outcome.rejected else []
    for pamphlet_id in state.get("used", []):
        memory.record_use(pamphlet_id, state["episode_id"], signal)
    pruned = prune(memory, list(dict.fromkeys([*state.get("used", []), *(p for p, _ in state.get("tried", []))])), ctx.settings, author)
    return {"written": written, "merged": merged, "rejected": rejected, "pruned": pruned}


def node_record(state: EpisodeState) -> dict[str, Any]:
    """The episode's wall time (it survives a resume in another process); the runner records the rest."""
    return {"seconds": time.time() - state.get("started", time.time())}


# ---------------------------------------------------------------- edges
def after_lane(state: EpisodeState) -> str:
    lane = state["lane"]
    if lane == "escalate":
        return "teacher"
    return "review" if lane == "coach" else "student"


def after_student(state: EpisodeState, runtime: Runtime[RunContext]) -> str:
    """Paired and coach lanes validate. An auto answer is audited (judged by the teacher) on a seeded
    share of episodes when something learns from judgments; unaudited auto episodes teach nothing."""
    ctx = runtime.context
    if state["lane"] in ("paired", "coach"):
        return "validate"
    learning = ctx.memory is not None and ctx.learn or not ctx.bandit.forced
    if ctx.settings.signal != "judgment" or not learning:
        return "submit"
    # seeded by the run's seed and the task (not the run's name), so the same seed audits the same tasks
    audited = random.Random(f"audit:{ctx.bandit.seed}:{state['task_id']}").random() < ctx.settings.audit_rate
    return "judge" if audited else "submit"


def after_validate(state: EpisodeState, runtime: Runtime[RunContext]) -> str:
    if state.get("validated"):
        return "submit"
    if state.get("attempts", 0) <= runtime.context.settings.max_retries and state.get("plan_index", 0) < len(state.get("plans", [])):
        return "student"
    return "teacher"


def build_graph(checkpointer: Any = None):
    graph = StateGraph(EpisodeState, context_schema=RunContext)
    for name, node in (
        ("retrieve", node_retrieve), ("choose_lane", node_choose_lane), ("review", node_review), ("student", node_student),
        ("validate", node_validate), ("teacher", node_teacher), ("judge", node_judge), ("submit", node_submit), ("score", node_score),
        ("lesson", node_lesson), ("distil", node_distil), ("record", node_record),
    ):
        graph.add_node(name, node)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "choose_lane")
    graph.add_conditional_edges("choose_lane", after_lane, ["teacher", "review", "student"])
    graph.add_edge("review", "student")
    graph.add_conditional_edges("student", after_student, ["validate", "judge", "submit"])
    graph.add_conditional_edges("validate", after_validate, ["submit", "student", "teacher"])
    graph.add_edge("teacher", "submit")
    graph.add_edge("judge", "submit")
    graph.add_edge("submit", "score")
    graph.add_edge("score", "lesson")
    graph.add_edge("lesson", "distil")
    graph.add_edge("distil", "record")
    graph.add_edge("record", END)
    return graph.compile(checkpointer=checkpointer)

