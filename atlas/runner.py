"""Run episodes through the graph: N at once, records in question order, checkpoints, resume, results.json.

Episodes run in worker threads (`RunSpec.workers`; LLM calls are I/O-bound, so threads overlap their
waits) or on Ray actors (`RunSpec.ray`, `atlas/ray_pool.py`). Learning stays online: an episode starts
from the memory and the lane statistics as they are when it starts, so what any finished episode
wrote is seen by every episode started after it. Lane choices of episodes still running
count as visits (`LaneBandit.settle`). Records reach `OUT/episodes.jsonl` once each and in
question order, whatever order episodes finish in (a finished episode waiting for an earlier one keeps
its final checkpoint, so a crash meanwhile loses nothing). With one worker a run is deterministic;
with several, which lessons an episode sees depends on which episodes finished before it started.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from atlas.agents.base import Episode, Student, Teacher
from atlas.checkpoints import CHECKPOINTS_FILE, open_checkpointer
from atlas.config import AgentSettings
from atlas.errors import AtlasError
from atlas.llm.meter import Meter
from atlas.run_summary import summarize
from atlas.workers import EpisodeJob, EpisodeWorker, RunSettings
from memory.store import MemoryStore
from policies.supervision import LANES, LaneBandit

EPISODES_FILE, RESULTS_FILE, RUN_FILE = "episodes.jsonl", "results.json", "run.json"
__all__ = ["CHECKPOINTS_FILE", "EpisodeInput", "RayWorkers", "RunSpec", "RunStopped", "read_records", "run_episodes"]
LANE_MODES = ("adaptive", *LANES)
MAX_WORKERS = 256


class RunStopped(Exception):
    """The run was asked to stop between episodes; `finished` episodes are saved."""

    def __init__(self, finished: int) -> None:
        super().__init__(f"stopped after {finished} episodes")
        self.finished = finished


@dataclass
class RayWorkers:
    """Run the episodes on Ray actors: `address` is "auto" (a running cluster, else a local Ray started
    here) or a cluster's address; `recipe` builds a worker's parts inside each actor (it must pickle)."""

    address: str
    actors: int
    recipe: Callable[[], Any]  # -> atlas.ray_pool.WorkerParts
    num_cpus: int | None = None  # CPUs of a local Ray started here (None: Ray's own count)


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
    workers: int = 1  # episodes in flight at once (threads of this process)
    ray: RayWorkers | None = None  # or on Ray actors (then `workers` is ignored)

    def __post_init__(self) -> None:
        if self.lane not in LANE_MODES:
            raise AtlasError(f"unknown lane {self.lane!r}; choose one of {', '.join(LANE_MODES)}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise AtlasError(f"--workers must be between 1 and {MAX_WORKERS}, got {self.workers}")
        if self.ray is not None and not 1 <= self.ray.actors <= MAX_WORKERS:
            raise AtlasError(f"the number of Ray actors must be between 1 and {MAX_WORKERS}, got {self.ray.actors}")


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


class Pool(Protocol):
    """Where episodes run: `submit` a job, `finished` blocks until at least one ends (its record, or the error)."""

    busy: int
    retried: int
    startup: dict[str, Any]  # where the pool's start-up went (Ray: the cluster's start, the actors' processes, each build)

    def submit(self, job: EpisodeJob, bandit: LaneBandit) -> None: ...

    def finished(self) -> list[tuple[EpisodeJob, dict[str, Any] | BaseException]]: ...

    def close(self) -> None: ...


class ThreadPool:
    """N daemon threads sharing one worker (an abort on a second Ctrl-C does not wait for them)."""

    def __init__(self, worker: EpisodeWorker, size: int) -> None:
        self.worker = worker
        self.busy = 0
        self.retried = 0  # a thread never loses its episode
        self.startup: dict[str, Any] = {}  # threads start at once
        self._jobs: queue.Queue[tuple[EpisodeJob, LaneBandit] | None] = queue.Queue()
        self._done: queue.Queue[tuple[EpisodeJob, dict[str, Any] | BaseException]] = queue.Queue()
        self._threads = [threading.Thread(target=self._serve, name=f"episode-worker-{n}", daemon=True) for n in range(size)]
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, bandit = item
            try:
                self._done.put((job, self.worker.run(job, bandit)))
            except BaseException as error:  # handed to the driver, which stops the run with it
                self._done.put((job, error))

    def submit(self, job: EpisodeJob, bandit: LaneBandit) -> None:
        self.busy += 1
        self._jobs.put((job, bandit))

    def finished(self) -> list[tuple[EpisodeJob, dict[str, Any] | BaseException]]:
        out = [self._done.get()]
        while not self._done.empty():
            out.append(self._done.get_nowait())
        self.busy -= len(out)
        return out

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


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
    """Run every episode (up to `spec.workers` at once); returns (and writes) results.json's content.

    `should_stop` is asked before each episode starts (e.g. after a Ctrl-C): the run then lets the
    episodes in flight finish, saves them, and ends with RunStopped; it continues later with `resume=True`."""
    protocol = preflight_agents(student, teacher)  # a model that cannot answer stops the run here, before any write
    out.mkdir(parents=True, exist_ok=True)
    episodes_path = out / EPISODES_FILE
    done = read_records(episodes_path)
    if done and not spec.resume:
        raise AtlasError(f"{out} already holds a run ({len(done)} episodes); pass --resume to continue it, or choose another --out")
    run_id = _check_same_run(out, spec, student, teacher, settings, resuming=bool(done) or spec.resume)
    lanes = LaneMemory(spec, settings, student, teacher)
    bandit = lanes.start(done)
    items = list(inputs)
    finished = {r["episode"] for r in done}
    jobs = []
    for index, item in enumerate(items):
        episode_id = f"{spec.name}:{index:05d}:{item.task_id}"
        if episode_id not in finished:
            jobs.append(EpisodeJob(index, episode_id, f"{run_id}/{episode_id}" if run_id else episode_id, item.task_id, dict(item.meta)))
    memory_target = spec.memory.target if spec.memory is not None else None
    run = RunSettings(spec.lane, spec.learn, tuple(spec.scope), spec.seed)
    started = time.perf_counter()
    with open_checkpointer(out, memory_target) as checkpointer:
        if spec.ray is not None:
            from atlas.ray_pool import RayPool

            pool: Pool = RayPool(spec.ray, settings, run, out, memory_target, run_id)
            width = spec.ray.actors
        else:
            worker = EpisodeWorker(student, teacher, settings, run, spec.memory, lambda job: items[job.index].make(), checkpointer, meter)
            pool, width = ThreadPool(worker, min(spec.workers, max(1, len(jobs)))), spec.workers
        startup = time.perf_counter() - started  # Ray: starting the actors (each loads its agents and memory)
        try:
            _drive(pool, width, jobs, bandit, lanes, episodes_path, checkpointer, done, progress, should_stop)
        finally:
            pool.close()
        retried, startup_detail = pool.retried, pool.startup
    results = {
        "run": spec.name, "lane": spec.lane, "learn": spec.learn, "memory": spec.memory is not None, "seed": spec.seed, **spec.extra,
        **summarize(done), "bandit": bandit.to_dict(), **({"protocol": protocol} if protocol else {}),
        "workers": {"kind": "ray" if spec.ray is not None else "threads", "size": width, "retried": retried, "startup": startup_detail},
        "pool_startup_s": round(startup, 2),
    }
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return results


def _drive(pool: Pool, width: int, jobs: list[EpisodeJob], bandit: LaneBandit, lanes: LaneMemory, episodes_path: Path,
           checkpointer: Any, done: list[dict[str, Any]], progress: Callable[[dict[str, Any]], None] | None,
           should_stop: Callable[[], bool] | None) -> None:
    """Keep `width` episodes in flight; write each record in question order once all before it are written."""
    pending = deque(jobs)
    order = deque(job.index for job in jobs)
    ready: dict[int, tuple[EpisodeJob, dict[str, Any]]] = {}
    error: BaseException | None = None
    stopping = False
    with episodes_path.open("a", encoding="utf-8") as sink:
        while True:
            while pending and pool.busy < width and error is None and not stopping:
                if should_stop is not None and should_stop():
                    stopping = True
                    break
                pool.submit(pending.popleft(), bandit)
            if not pool.busy:
                break
            for job, outcome in pool.finished():
                if isinstance(outcome, BaseException):
                    bandit.settle(job.task_id)
                    error = error or outcome  # the others in flight finish and are saved first
                    continue
                lanes.learn(bandit, outcome)
                bandit.settle(job.task_id)  # after its outcome is in, so it counts as a visit throughout
                ready[job.index] = (job, outcome)
                done.append(outcome)
                if progress:
                    progress(outcome)
            while order and order[0] in ready:
                job, record = ready.pop(order.popleft())
                sink.write(json.dumps(record, sort_keys=True) + "\n")
                sink.flush()
                checkpointer.delete_thread(job.thread_id)  # the record is the durable copy now
    if error is not None:
        raise error
    if pending:
        raise RunStopped(len(done))


class LaneMemory:
    """The lane bandit of a run, and where its statistics persist: in the memory store (so that the next
    run, or another host, starts from them), one outcome per episode so that nothing counts twice."""

    def __init__(self, spec: RunSpec, settings: AgentSettings, student: Student, teacher: Teacher) -> None:
        self.spec, self.settings = spec, settings
        self.key = f"lanes:{'|'.join(spec.scope)}:{student.name}:{teacher.name}"
        adaptive = spec.lane == "adaptive"
        self.reads = adaptive and spec.memory is not None
        self.writes = self.reads and spec.learn and not spec.memory.read_only  # type: ignore[union-attr]

    def start(self, done: list[dict[str, Any]]) -> LaneBandit:
        spec, settings = self.spec, self.settings
        bandit = LaneBandit(lam=settings.lam, explore=settings.explore, forced=None if spec.lane == "adaptive" else spec.lane, seed=spec.seed)  # type: ignore[arg-type]
        if bandit.forced:
            return bandit
        if self.writes:  # a record written just before a crash may lack its stored outcome: store it now (once)
            for record in done:
                self._store(record)
        if self.reads:
            bandit.absorb(spec.memory.lane_totals(self.key))  # type: ignore[union-attr]
        if not self.writes:  # nothing persisted for this run: its finished episodes teach the bandit again
            for record in done:
                if _teaches(record):
                    bandit.update(record["context"], record["lane"], record["signal"], record["cost"])
        return bandit

    def learn(self, bandit: LaneBandit, record: dict[str, Any]) -> None:
        """A finished episode updates the bandit once (an outcome already stored was counted when loaded)."""
        if bandit.forced or not _teaches(record):
            return
        if self.writes and not self._store(record):
            return
        bandit.update(record["context"], record["lane"], record["signal"], record["cost"])

    def _store(self, record: dict[str, Any]) -> bool:
        if not _teaches(record):
            return False
        return self.spec.memory.record_lane_outcome(self.key, record["episode"], record["context"], record["lane"], record["signal"], record["cost"])  # type: ignore[union-attr]


def _teaches(record: dict[str, Any]) -> bool:
    return record["signal"] is not None and not record.get("model_error")


def preflight_agents(*agents: Student | Teacher) -> dict[str, dict[str, str]]:
    """Each LLM agent's model answers (or the run stops with a configuration error); returns how each is spoken to."""
    protocol: dict[str, dict[str, str]] = {}
    for role, agent in zip(("student", "teacher"), agents):
        check = getattr(agent, "preflight", None)
        if check is not None:
            check()
            protocol[role] = agent.protocol  # type: ignore[union-attr]
    return protocol


def _check_same_run(out: Path, spec: RunSpec, student: Student, teacher: Teacher, settings: AgentSettings, resuming: bool) -> str:
    """A resumed run must be the same run: same lane, learning mode, seed, agents and settings. Returns the
    run's id (kept in run.json; checkpoint threads carry it; a folder from before ids has none: "")."""
    identity = {
        "lane": spec.lane, "learn": spec.learn, "memory": spec.memory is not None, "seed": spec.seed,
        "student": student.name, "teacher": teacher.name, "settings": settings.model_dump(),
    }
    path = out / RUN_FILE
    run_id = uuid.uuid4().hex[:16]
    if resuming and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(key for key in identity if before.get(key) != identity[key])
        if changed:
            raise AtlasError(f"{out} holds a run with other {', '.join(changed)}; resume it with the same options, or choose another --out")
        run_id = before.get("run_id", "")
    path.write_text(json.dumps({**identity, "run_id": run_id}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return run_id
