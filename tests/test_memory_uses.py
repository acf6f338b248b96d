"""Idempotent side effects (issue 15): a use is recorded once per (pamphlet, episode), old stores are
migrated, merges keep one use per episode, and replaying a graph node writes nothing twice."""

from __future__ import annotations

from datetime import datetime, UTC
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from memory import tables as t
from memory.store import MemoryStore


def test_a_use_is_recorded_once_per_episode(store) -> None:
    pid = store.add({"text": "pivot from the alert's host to its logons"}).id
    assert store.record_use(pid, "ep-1", 1.0) is True
    assert store.record_use(pid, "ep-1", 0.0) is False  # a replayed node: nothing changes
    assert store.record_use(pid, "ep-2", 0.0) is True
    assert store.track_record(pid).uses == 2 and store.track_record(pid).mean_reward == 0.5
    assert [u["reward"] for u in store.uses(pid)] == [1.0, 0.0]


def test_an_older_store_is_migrated_once(store_target: str, tmp_path: Path) -> None:
    first = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "indexes")
    pid = first.add({"text": "hunt for encoded PowerShell"}).id
    other = first.add({"text": "check inbox rules"}).id
    with first.engine.begin() as conn:  # make it a version-1 store holding a doubled use
        conn.execute(text(f"DROP INDEX {t.USES_UNIQUE}"))
        conn.execute(text("DROP TABLE lane_outcomes"))
        conn.execute(text("UPDATE store_state SET schema_version = 1"))
        for episode, reward in (("ep-1", 1.0), ("ep-1", 0.0), ("ep-2", 1.0)):
            conn.execute(t.pamphlet_uses.insert().values(pamphlet_id=pid, episode_id=episode, reward=reward, used_at=datetime.now(UTC)))
        conn.execute(t.pamphlet_uses.insert().values(pamphlet_id=other, episode_id="ep-1", reward=1.0, used_at=datetime.now(UTC)))
    first.close()

    again = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "indexes")
    assert any("upgraded from version 1 to 2" in n and "1 duplicate uses removed" in n for n in again.notices)
    assert [u["reward"] for u in again.uses(pid)] == [1.0, 1.0]  # the first of the doubled use was kept
    assert again.record_use(pid, "ep-2", 0.0) is False and again.record_use(other, "ep-2", 0.0) is True
    assert again.record_lane_outcome("lanes:x", "ep-1", "no_plan", "paired", 1.0, 0.01) is True
    with again.engine.connect() as conn:
        assert conn.execute(text("SELECT schema_version FROM store_state")).scalar_one() == t.SCHEMA_VERSION
        assert t.USES_UNIQUE in {i["name"] for i in inspect(conn).get_indexes("pamphlet_uses")}
    again.close()
    third = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "indexes")
    assert not any("upgraded" in n for n in third.notices)  # once
    third.close()


def test_a_merge_keeps_one_use_per_episode(store) -> None:
    a = store.add({"text": "check SigninLogs for the risky sign-in of the user"}).id
    b = store.add({"text": "check SigninLogs for the risky sign-in of the user!"}).id
    store.record_use(a, "ep-1", 1.0)
    store.record_use(b, "ep-1", 0.0)  # both were used by one episode
    store.record_use(b, "ep-2", 1.0)
    store.merge(a, [b])
    assert [(u["episode_id"], u["reward"]) for u in store.uses(a)] == [("ep-1", 1.0), ("ep-2", 1.0)]


def test_lane_outcomes_count_once_and_total_per_bandit(store) -> None:
    assert store.record_lane_outcome("lanes:a", "ep-1", "no_plan", "paired", 1.0, 0.02)
    assert not store.record_lane_outcome("lanes:a", "ep-1", "no_plan", "paired", 1.0, 0.02)
    assert store.record_lane_outcome("lanes:a", "ep-2", "no_plan", "paired", 0.0, 0.04)
    assert store.record_lane_outcome("lanes:b", "ep-1", "good_plan", "auto", 1.0, 0.0)
    assert store.lane_totals("lanes:a") == [("no_plan", "paired", 2, 1.0, pytest.approx(0.06))]
    with pytest.raises(Exception, match="finite"):
        store.record_lane_outcome("lanes:a", "ep-3", "no_plan", "paired", float("nan"), 0.0)


def test_replaying_the_writing_nodes_writes_nothing_twice(tmp_path: Path) -> None:
    """An episode run to its end, then its lesson and distil nodes run again from the checkpoint before
    them (as after a crash inside distil): no use, pamphlet or provenance entry is added twice."""
    from langgraph.checkpoint.memory import InMemorySaver

    from atlas.config import load_settings
    from atlas.graph import RunContext, build_graph
    from atlas.llm.ledger import CallLedger
    from benchmarks.investigation.database import open_database
    from benchmarks.investigation.episodes import SocEpisode
    from benchmarks.investigation.generate import generate
    from benchmarks.investigation.procedural import SCOPE_TAG, ProceduralStudent, ProceduralTeacher
    from benchmarks.investigation.question_files import read_questions
    from policies.supervision import LaneBandit

    world = tmp_path / "world"
    generate(world, seed=4, size="small", incidents=4)
    questions = read_questions(world / "questions.jsonl")
    settings = load_settings().agents
    memory = MemoryStore.open(str(tmp_path / "memory.sqlite"), embedder="hash:128", index_dir=tmp_path / "indexes")
    graph = build_graph(InMemorySaver())
    with open_database(str(world / "world.db")) as database:
        def run(question, episode_id: str, checkpoint: str | None = None):
            context = RunContext(SocEpisode(question, database), ProceduralStudent(), ProceduralTeacher(), settings, LaneBandit(forced="paired"),
                                 memory=memory, scope=(SCOPE_TAG,), calls=CallLedger())
            config = {"configurable": {"thread_id": episode_id, **({"checkpoint_id": checkpoint} if checkpoint else {})}}
            return graph.invoke(None if checkpoint else {"episode_id": episode_id, "task_id": question.id, "steps": []}, config, context=context)

        first = run(questions[0], "ep-0")  # the teacher takes over (no plan yet) and a lesson is written
        assert first["written"]
        second = run(questions[0], "ep-1")  # the student follows that plan: a use is recorded
        assert second["used"] or second["tried"]
        uses = {p.id: len(memory.uses(p.id)) for p in memory.list(limit=None)}
        provenance = {p.id: p.provenance.episode_ids for p in memory.list(limit=None)}
        for episode_id, state in (("ep-0", first), ("ep-1", second)):
            history = list(graph.get_state_history({"configurable": {"thread_id": episode_id}}))
            before = next(s for s in history if s.next == ("lesson",))
            replayed = run(questions[0], episode_id, before.config["configurable"]["checkpoint_id"])
            assert replayed["written"] == state["written"] and replayed["merged"] == state["merged"]
    assert {p.id: len(memory.uses(p.id)) for p in memory.list(limit=None)} == uses
    assert {p.id: p.provenance.episode_ids for p in memory.list(limit=None)} == provenance
    memory.close()


def test_a_pamphlet_edited_by_another_episode_meanwhile_is_read_again_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent episodes prune or reinforce one pamphlet at once: the loser of the race retries on the
    pamphlet as the winner left it (a real ConcurrentEdit from SQL), instead of stopping the run."""
    from atlas.config import load_settings
    from atlas.distillation import prune

    target = str(tmp_path / "memory.sqlite")
    store = MemoryStore.open(target, embedder="hash:64", index_dir=tmp_path / "a")
    other = MemoryStore.open(target, embedder="hash:64", index_dir=tmp_path / "b")
    settings = load_settings().agents
    pid = store.add({"text": "follow the account to its sign-ins"}).id
    for n in range(settings.prune_after_uses):
        store.record_use(pid, f"ep-{n}", 0.0)
    read = store.get
    raced: list[int] = []

    def get_then_race(pamphlet_id: int):
        current = read(pamphlet_id)
        if not raced:  # another episode reinforces it between this read and the write
            raced.append(pamphlet_id)
            other.update(pamphlet_id, tags=["reinforced-meanwhile"], change="reinforced")
        return current

    monkeypatch.setattr(store, "get", get_then_race)
    assert prune(store, [pid], settings, "teacher") == [pid]
    monkeypatch.undo()
    assert raced and store.get(pid).deleted and store.get(pid).tags == ["reinforced-meanwhile"]
    assert [v.change for v in store.history(pid)][-2:] == ["reinforced", f"pruned: mean reward 0.00 over {settings.prune_after_uses} uses"]
    store.close()
    other.close()
