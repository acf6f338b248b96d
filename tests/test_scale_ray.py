"""Episodes on a real local Ray (issue 18): a worker killed mid-run, a shared PostgreSQL memory with its
checkpoints, and a worker that cannot reach the memory. Slow: each starts Ray actors that load the memory."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from atlas.cli.workers import WorkerRecipe
from atlas.config import load_settings
from atlas.errors import AtlasError
from atlas.runner import RayWorkers, RunSpec, read_records, run_episodes
from benchmarks.investigation.arms import inputs_for
from benchmarks.investigation.database import open_database
from benchmarks.investigation.episodes import select_questions
from benchmarks.investigation.generate import generate
from benchmarks.investigation.procedural import SCOPE_TAG, ProceduralStudent, ProceduralTeacher
from benchmarks.investigation.question_files import read_questions
from memory.store import MemoryStore

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="atlas")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scale-ray") / "world"
    generate(out, seed=6, size="small", incidents=6)
    return out


def ray_run(world: Path, out: Path, memory: MemoryStore, recipe_memory: str, actors: int, limit: int, progress=None):
    settings = load_settings(home=str(out.parent / "home"))
    chosen = select_questions(read_questions(world / "questions.jsonl"), seed=0, limit=limit)
    recipe = WorkerRecipe("procedural", "local", "local", settings, str(world / "world.db"), str(world / "questions.jsonl"), recipe_memory)
    spec = RunSpec(out.name, memory=memory, scope=(SCOPE_TAG,), seed=0, ray=RayWorkers("auto", actors, recipe))
    with open_database(str(world / "world.db")) as database:
        return run_episodes(inputs_for(chosen, database), ProceduralStudent(), ProceduralTeacher(), settings.agents, spec, out, progress=progress)


def test_a_killed_worker_loses_nothing_with_a_shared_postgres_memory(local_ray, world: Path, tmp_path: Path, postgres_url: str) -> None:
    """Kill one actor's process mid-run: the run completes, its episode is retried on a new actor (from its
    checkpoint in PostgreSQL), every episode is recorded once, and no use or lesson is written twice."""
    from sqlalchemy import create_engine, text

    memory = MemoryStore.open(postgres_url, embedder="hash:128", index_dir=tmp_path / "indexes")
    killed: list[int] = []

    def kill_one(record: dict) -> None:
        if killed:
            return
        name = next(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("atlas-worker-"))
        pid = ray.get(ray.get_actor(name, namespace="atlas").pid.remote())
        killed.append(pid)
        os.kill(pid, signal.SIGKILL)

    results = ray_run(world, tmp_path / "run", memory, postgres_url, actors=2, limit=12, progress=kill_one)
    lines = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert killed and results["workers"]["kind"] == "ray" and results["workers"]["retried"] >= 1
    startup = results["workers"]["startup"]  # Ray was running (the fixture's): no cluster start, only the actors' own
    assert startup["cluster_s"] < 1 and len(startup["actors_s"]) == 2 and all(0 < s <= results["pool_startup_s"] for s in startup["actors_s"])
    assert 0 <= startup["processes_s"] and startup["cluster_s"] + startup["processes_s"] + max(startup["actors_s"]) <= results["pool_startup_s"] + 0.05
    assert [r["index"] for r in lines] == list(range(12)) and len({r["episode"] for r in lines}) == 12
    created = [(p.provenance.episode_ids[0], p.text) for p in memory.list(limit=None, include_deleted=True) if p.provenance.source == "distill"]
    assert created and len(created) == len(set(created))  # several lessons per episode (skills), none twice
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        uses, distinct = conn.execute(text("SELECT count(*), count(DISTINCT (pamphlet_id, episode_id)) FROM pamphlet_uses")).one()
        assert uses == distinct
        assert conn.execute(text("SELECT count(*) FROM checkpoints")).scalar_one() == 0  # every episode recorded: its checkpoints deleted
    engine.dispose()
    assert read_records(tmp_path / "run" / "episodes.jsonl")[0]["lane"] == "paired"
    memory.close()


def test_a_worker_that_cannot_reach_the_memory_stops_the_run(local_ray, world: Path, tmp_path: Path) -> None:
    memory = MemoryStore.open(str(tmp_path / "memory.sqlite"), embedder="hash:128", index_dir=tmp_path / "indexes")
    outcome: dict[str, BaseException] = {}

    def attempt() -> None:
        try:
            ray_run(world, tmp_path / "run", memory, "postgresql+psycopg2://postgres@127.0.0.1:1/unreachable", actors=1, limit=3)
        except BaseException as error:  # noqa: BLE001 (handed to the test's thread)
            outcome["error"] = error

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(300)
    assert not thread.is_alive(), "the run hung"
    assert isinstance(outcome.get("error"), AtlasError) and "could not start" in str(outcome["error"]) and "cannot open memory store" in str(outcome["error"])
    assert read_records(tmp_path / "run" / "episodes.jsonl") == []
    memory.close()
