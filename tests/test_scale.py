"""Episodes at once (issue 18): worker threads, records in question order, resume, lane statistics kept
in the memory, checkpoints beside a PostgreSQL memory, and the live answerer's concurrent requests."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.memory import InMemorySaver

from atlas.config import load_settings
from atlas.errors import AtlasError
from atlas.runner import EpisodeInput, RunSpec, RunStopped, read_records, run_episodes
from atlas.workers import EpisodeJob, EpisodeWorker, RunSettings
from benchmarks.investigation.arms import inputs_for
from benchmarks.investigation.database import open_database
from benchmarks.investigation.episodes import select_questions
from benchmarks.investigation.generate import generate
from benchmarks.investigation.procedural import SCOPE_TAG, ProceduralStudent, ProceduralTeacher
from benchmarks.investigation.question_files import read_questions
from memory.store import MemoryStore
from policies.supervision import LaneBandit


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scale") / "world"
    generate(out, seed=5, size="small", incidents=6)
    return out


def store_at(target: str, tmp_path: Path) -> MemoryStore:
    return MemoryStore.open(target, embedder="hash:128", index_dir=tmp_path / "indexes")


def run(world: Path, out: Path, memory, workers: int, limit: int, resume: bool = False, should_stop=None, wrap=None, progress=None):
    chosen = select_questions(read_questions(world / "questions.jsonl"), seed=0, limit=limit)
    with open_database(str(world / "world.db")) as database:
        inputs = inputs_for(chosen, database)
        if wrap is not None:
            inputs = [EpisodeInput(make=wrap(item), task_id=item.task_id, meta=item.meta) for item in inputs]
        spec = RunSpec(out.name, memory=memory, scope=(SCOPE_TAG,), seed=0, resume=resume, workers=workers)
        return run_episodes(inputs, ProceduralStudent(), ProceduralTeacher(), load_settings().agents, spec, out, should_stop=should_stop, progress=progress)


def lines_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "episodes.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_lessons_once(memory: MemoryStore) -> None:
    # an episode may write several lessons (one skill per hop), but never the same one twice
    created = [(p.provenance.episode_ids[0], p.text) for p in memory.list(limit=None, include_deleted=True) if p.provenance.source == "distill"]
    assert len(created) == len(set(created))


def test_workers_record_each_episode_once_in_question_order_and_resume(world: Path, tmp_path: Path) -> None:
    memory = store_at(str(tmp_path / "memory.sqlite"), tmp_path)
    seen: list[int] = []
    with pytest.raises(RunStopped):
        run(world, tmp_path / "run", memory, workers=4, limit=24, should_stop=lambda: len(seen) >= 6, progress=lambda r: seen.append(r["index"]))
    partial = lines_of(tmp_path / "run")
    assert [r["index"] for r in partial] == list(range(len(partial))) and len(partial) >= 6  # the episodes in flight were finished and saved
    results = run(world, tmp_path / "run", memory, workers=4, limit=24, resume=True)
    lines = lines_of(tmp_path / "run")
    assert [r["index"] for r in lines] == list(range(24)) and len({r["episode"] for r in lines}) == 24
    assert results["episodes"] == 24 and results["workers"] == {"kind": "threads", "size": 4, "retried": 0, "startup": {}}
    assert sum(len(r["pamphlets_written"]) for r in lines) > 0 and results["success_rate"] > 0.5
    assert_lessons_once(memory)
    memory.close()


def test_lane_statistics_are_kept_in_the_memory_for_the_next_run(world: Path, tmp_path: Path) -> None:
    memory = store_at(str(tmp_path / "memory.sqlite"), tmp_path)
    first = run(world, tmp_path / "first", memory, workers=2, limit=10)
    taught = sum(1 for r in read_records(tmp_path / "first" / "episodes.jsonl") if r["signal"] is not None and not r["model_error"])
    key = f"lanes:{SCOPE_TAG}:{ProceduralStudent().name}:{ProceduralTeacher().name}"
    assert sum(n for _, _, n, _, _ in memory.lane_totals(key)) == taught == sum(a["n"] for arms in first["bandit"].values() for a in arms.values())
    second = run(world, tmp_path / "second", memory, workers=2, limit=6)
    taught_again = sum(1 for r in read_records(tmp_path / "second" / "episodes.jsonl") if r["signal"] is not None and not r["model_error"])
    counted = sum(a["n"] for arms in second["bandit"].values() for a in arms.values())
    assert taught_again > 0 and counted == taught + taught_again  # the second run started from what the first learned
    memory.close()


def test_bad_worker_counts_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AtlasError, match="--workers must be between 1 and 256"):
        RunSpec("x", workers=0)
    from typer.testing import CliRunner

    from atlas.cli.main import app

    result = CliRunner().invoke(app, ["run", "--world", str(tmp_path), "--out", str(tmp_path / "o"), "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output


class Crash(Exception):
    """Stands for a worker process dying in the middle of an episode."""


def test_checkpoints_beside_a_postgres_memory_resume_from_another_folder(world: Path, tmp_path: Path, postgres_url: str) -> None:
    """An episode cut off mid-way leaves its checkpoints in PostgreSQL; the run folder copied elsewhere
    (another host: no local checkpoint file) resumes it from there, and every episode is recorded once."""
    from sqlalchemy import create_engine

    memory = store_at(postgres_url, tmp_path)
    target = 5

    def wrap(item):
        def make():
            episode = item.make()
            if item.task_id != chosen[target].id:
                return episode
            real = episode.step
            calls = {"n": 0}

            def step(sql: str):
                calls["n"] += 1
                if calls["n"] > 3:
                    raise Crash("the worker died")
                return real(sql)

            episode.step = step
            return episode
        return make

    chosen = select_questions(read_questions(world / "questions.jsonl"), seed=0, limit=10)
    with pytest.raises(Crash):
        run(world, tmp_path / "host-a" / "run", memory, workers=1, limit=10, wrap=wrap)
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        threads = conn.exec_driver_sql("SELECT count(DISTINCT thread_id) FROM checkpoints").scalar_one()
    assert threads == 1 and not (tmp_path / "host-a" / "run" / "checkpoints.sqlite").exists()
    shutil.copytree(tmp_path / "host-a" / "run", tmp_path / "host-b" / "run")
    results = run(world, tmp_path / "host-b" / "run", memory, workers=3, limit=10, resume=True)
    lines = lines_of(tmp_path / "host-b" / "run")
    assert [r["index"] for r in lines] == list(range(10)) and results["episodes"] == 10
    assert lines[target]["queries"]["teacher"] + lines[target]["queries"]["student"] > 0
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(DISTINCT thread_id) FROM checkpoints").scalar_one() == 0  # recorded: deleted
    engine.dispose()
    assert_lessons_once(memory)
    memory.close()


def test_an_unreachable_postgres_memory_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    from memory.errors import MemoryStoreError

    started = time.monotonic()
    with pytest.raises(MemoryStoreError, match="cannot open memory store"):
        MemoryStore.open("postgresql+psycopg2://postgres@127.0.0.1:1/nothing", embedder="hash:64", index_dir=tmp_path)
    assert time.monotonic() - started < 30


def test_the_live_answerer_sends_requests_at_once_and_keeps_their_order(openai_settings, openai_server) -> None:
    from atlas.llm import make_llm
    from atlas.llm.answerers import LiveAnswerer
    from atlas.llm.classify import SENTIMENT_PROMPT
    from tests.openai_server import Reply

    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def responder(request: dict) -> Reply:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return Reply(content="positive" if "loved" in request["messages"][-2]["content"] else "negative")

    openai_server.responder = responder
    texts = [f"I {'loved' if n % 3 else 'hated'} film number {n}" for n in range(12)]
    ids = [str(n) for n in range(12)]
    client = make_llm("openai:labeller", openai_settings, cache=False)
    assert LiveAnswerer(client, SENTIMENT_PROMPT).concurrency == openai_settings.openai.concurrency == 16
    one = LiveAnswerer(client, SENTIMENT_PROMPT, concurrency=1)(ids, texts)
    assert state["most"] == 1
    many = LiveAnswerer(client, SENTIMENT_PROMPT, concurrency=6)(ids, texts)
    assert state["most"] > 1 and many.labels == one.labels == [1 if n % 3 else 0 for n in range(12)]
    with pytest.raises(AtlasError, match="concurrency must be at least 1"):
        LiveAnswerer(client, SENTIMENT_PROMPT, concurrency=0)


def test_run_with_an_unreachable_memory_exits_2_with_the_reason(world: Path, tmp_path: Path) -> None:
    from tests.test_cli import atlas_process

    result = atlas_process("run", "--world", str(world), "--episodes", "2", "--workers", "2",
                           "--memory", "postgresql+psycopg2://postgres@127.0.0.1:1/nothing", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "cannot open memory store" in result.stderr
    assert not (tmp_path / "o" / "episodes.jsonl").exists()


@pytest.mark.parametrize("workers", ["a,b", "0,4", ","])
def test_bench_scale_refuses_bad_worker_lists(tmp_path: Path, workers: str) -> None:
    from typer.testing import CliRunner

    from atlas.cli.main import app

    result = CliRunner().invoke(app, ["bench", "scale", "--workers", workers, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--workers" in result.output and not (tmp_path / "o").exists()


def test_ideal_wall_time_hands_episodes_out_in_order_to_the_first_free_worker() -> None:
    from benchmarks.scale_bench import ideal_wall_s

    assert ideal_wall_s([3, 1, 1, 1], 1, 0.5) == 3.0  # one worker: the sum
    assert ideal_wall_s([3, 1, 1, 1], 2, 1.0) == 3.0  # the long one first; the short ones fill the other worker
    assert ideal_wall_s([1, 1, 1, 3], 2, 1.0) == 4.0  # the long one last: it starts late (question order is kept)
    assert ideal_wall_s([2, 2], 16, 1.0) == 2.0 and ideal_wall_s([], 4, 1.0) == 0.0
    with pytest.raises(ValueError, match="workers must be >= 1"):
        ideal_wall_s([1], 0, 1.0)


def test_bench_endpoint_declares_the_stand_ins_prices_and_keeps_a_users_own(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from atlas.config import Price
    from atlas.llm.meter import PriceTable
    from benchmarks.scale_bench import endpoint_settings

    mine = Price(input_per_1m=1.0, output_per_1m=2.0)
    settings = load_settings(home=str(tmp_path / "home"))
    settings = settings.model_copy(update={"prices": {**settings.prices, "standin-teacher": mine}})
    local = endpoint_settings(settings, "http://127.0.0.1:1/v1", "key")
    assert local.price_for("standin-student") == settings.prices["default"] and local.price_for("standin-teacher") == mine
    with caplog.at_level("WARNING"):
        PriceTable(settings).price("standin-labeller", is_local=False)  # undeclared: the warning the bench avoids
        assert "no price for model 'standin-labeller'" in caplog.text
        caplog.clear()
        PriceTable(local).price("standin-labeller", is_local=False)
    assert "no price" not in caplog.text and local.openai.base_url == "http://127.0.0.1:1/v1"


def test_bench_report_splits_a_ray_start_up_and_shows_no_ceiling_as_a_dash() -> None:
    from benchmarks.scale_bench import report

    def config(detail: dict, ceiling: float | None) -> dict:
        return {"seconds": 10.0, "startup_s": 4.0, "episodes_per_s": 0.4, "speedup": 1.0, "ideal": {"speedup": ceiling, "speedup_with_sequential_calls": ceiling},
                "llm_calls": 30, "success_rate": 1.0, "cost_per_task": 0.01, "learning_curve_vs_sequential": None, "checks": {"ok": True}, "startup_detail": detail}

    results = {"episodes": 4, "latency_s": 0.3, "seed": 0, "targets": {}, "answerer": None,
               "configs": {"threads_1": config({}, None), "ray_2": config({"cluster_s": 1.5, "processes_s": 0.5, "actors_s": [2.25, 3.0]}, 1.2)}}
    text = report(results)
    assert "ray_2 start-up: the cluster 1.5 s, the actors' processes and imports 0.5 s, their builds 2.25-3.0 s" in text and "threads_1 start-up" not in text
    assert "| threads_1 | 10.0 | 4.0 | 0.4 | 1.0 | - / - |" in text and "| 1.2 / 1.2 |" in text


@pytest.mark.slow
def test_bench_scale_end_to_end_on_a_few_episodes(world: Path, tmp_path: Path) -> None:
    from benchmarks.scale_bench import run_scale_bench

    settings = load_settings(home=str(tmp_path / "home"))
    results = run_scale_bench(world, tmp_path / "bench", settings, episodes=4, latency_s=0.02, workers=(1, 2), ray_actors=None, answerer_items=4)
    assert set(results["configs"]) == {"threads_1", "threads_2"}
    assert all(all(c["checks"].values()) for c in results["configs"].values())
    assert results["configs"]["threads_2"]["learning_curve_vs_sequential"] is not None and results["answerer"]["items"] == 4
    assert (tmp_path / "bench" / "report.md").is_file()
    two = results["configs"]["threads_2"]["ideal"]  # a ceiling is never below the measured speed-up of an engine with CPU
    assert two["speedup"] >= results["configs"]["threads_2"]["speedup"] and results["configs"]["threads_1"]["ideal"]["seconds"] <= results["configs"]["threads_1"]["seconds"]
    assert "ceiling: own calls / sequential's" in (tmp_path / "bench" / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_bench_scale_without_latency_has_no_ceiling(world: Path, tmp_path: Path) -> None:
    from benchmarks.scale_bench import run_scale_bench

    settings = load_settings(home=str(tmp_path / "home"))
    results = run_scale_bench(world, tmp_path / "bench", settings, episodes=2, latency_s=0.0, workers=(1,), ray_actors=None, answerer_items=0)
    assert results["configs"]["threads_1"]["ideal"] == {"seconds": 0.0, "seconds_with_sequential_calls": 0.0, "speedup": None, "speedup_with_sequential_calls": None}
    assert "| - / - |" in (tmp_path / "bench" / "report.md").read_text(encoding="utf-8")


def test_a_ray_recipe_takes_the_drivers_model_capabilities(world: Path, openai_settings, openai_server) -> None:
    """What an actor builds: LLM agents that reuse the driver's probe (one ping per model, not two probes each)."""
    import pickle

    from atlas.cli.run import make_agents
    from atlas.cli.workers import WorkerRecipe, decided_capabilities
    from atlas.llm.meter import Meter
    from tests.openai_server import Reply

    openai_server.responder = lambda request: Reply(tool_calls=[("ping", {"word": "ok"})]) if request.get("tools") else Reply(content='{"yes": true}')
    student, teacher = make_agents("llm", "openai:gpt-4o-mini", "openai:gpt-4o", openai_settings, Meter(), quiet=True)
    assert len(openai_server.requests) == 4  # the driver probes each model: a tool call, a schema reply
    known = decided_capabilities(student, teacher)
    assert set(known) == {"student", "teacher"} and decided_capabilities(ProceduralStudent(), ProceduralTeacher()) == {}
    recipe = pickle.loads(pickle.dumps(WorkerRecipe("llm", "openai:gpt-4o-mini", "openai:gpt-4o", openai_settings, str(world / "world.db"),
                                                    str(world / "questions.jsonl"), None, known)))
    parts = recipe()
    try:
        assert len(openai_server.requests) == 6 and not any(r.get("tools") or r.get("response_format") for r in openai_server.requests[4:])
        assert parts.student.protocol["mode"] == parts.teacher.protocol["mode"] == "tools"
        assert parts.student.protocol["decided_by"] == "given"
    finally:
        assert parts.close is not None
        parts.close()


class _KilledBeforeCheckpoint(Exception):
    """Stands for a SIGKILL that lands after a node's writes were stored and before the next checkpoint."""


def test_an_episode_killed_between_a_nodes_writes_and_its_checkpoint_is_finished_not_skipped(world: Path, tmp_path: Path) -> None:
    """The retry path of a killed worker: LangGraph leaves a node whose writes were stored out of `next`, so a
    thread cut off there looked finished though it never reached `score` (a KeyError on the record, seen once
    in CI with Ray). Every cut point gives the record an uninterrupted run gives."""
    class Saver(InMemorySaver):
        def __init__(self) -> None:
            super().__init__()
            self.fail_at: int | None = None
            self.puts = 0

        def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
            self.puts += 1
            if self.fail_at is not None and self.puts == self.fail_at:
                raise _KilledBeforeCheckpoint(self.puts)
            return super().put(config, checkpoint, metadata, new_versions)

    question = select_questions(read_questions(world / "questions.jsonl"), seed=0, limit=1)[0]
    settings, run_settings = load_settings().agents, RunSettings("paired", True, (SCOPE_TAG,), 0)
    with open_database(str(world / "world.db")) as database:
        item = inputs_for([question], database)[0]

        def worker_on(name: str, saver: Saver) -> tuple[EpisodeWorker, MemoryStore]:
            memory = store_at(str(tmp_path / f"{name}.sqlite"), tmp_path / name)
            return EpisodeWorker(ProceduralStudent(), ProceduralTeacher(), settings, run_settings, memory, lambda job: item.make(), saver), memory

        def job(thread: str) -> EpisodeJob:
            return EpisodeJob(0, "run:00000", thread, question.id, dict(item.meta))

        reference_saver = Saver()
        worker, memory = worker_on("reference", reference_saver)
        reference = worker.run(job("reference"), LaneBandit(forced="paired"))
        memory.close()
        steps = reference_saver.puts
        assert steps > 5 and reference["success"] and reference["pamphlets_written"]
        seen_hidden = False
        for cut in range(2, steps + 1):
            saver = Saver()
            saver.fail_at = cut
            worker, memory = worker_on(f"cut{cut}", saver)
            with pytest.raises(_KilledBeforeCheckpoint):
                worker.run(job(f"cut{cut}"), LaneBandit(forced="paired"))
            snapshot = worker.graph.get_state({"configurable": {"thread_id": f"cut{cut}"}})
            seen_hidden |= not snapshot.next and bool(snapshot.tasks)  # the case `next` alone misread as finished
            saver.fail_at = None
            record = worker.run(job(f"cut{cut}"), LaneBandit(forced="paired"))
            memory.close()
            for key in ("success", "lane", "answer", "queries", "pamphlets_written", "pamphlets_used"):
                assert record[key] == reference[key], (cut, key)
        assert seen_hidden
