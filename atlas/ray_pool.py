"""Episodes on Ray actors: one `EpisodeWorker` per actor, each with its own agents, memory handle and
database, built inside the actor by a picklable recipe (the CLI's, which knows the benchmark).

The memory is shared through its SQL truth: a PostgreSQL URL for a cluster (each actor's FAISS copy
follows it by the store's sequence stamps), or a SQLite file for the actors of one host. Checkpoints go
beside a PostgreSQL memory, else to the run folder's SQLite file. An actor that dies mid-episode (its
process killed, its node lost) is replaced and the episode retried on the new actor from its last
checkpoint; the nodes it replays are idempotent, and the driver alone writes records, so every episode
is recorded once. An actor that cannot build its parts (say, it cannot reach the memory) stops the run
with that error. Actors take no CPU reservation (they wait on I/O), so a small machine holds many.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.agents.base import Episode, Student, Teacher
from atlas.checkpoints import open_checkpointer
from atlas.config import AgentSettings
from atlas.errors import AtlasError
from atlas.llm.meter import Meter
from atlas.workers import EpisodeJob, EpisodeWorker, RunSettings
from memory.store import MemoryStore
from policies.supervision import LaneBandit

RETRIES = 3  # times one episode is retried on a new actor after its actor died
READY_TIMEOUT_S = 600.0  # an actor loads an embedder and opens the memory: slow on a loaded machine, never a hang
CHOICE_TIMEOUT_S = 10.0  # asking a busy actor for its episode's lane choice reads one field: a slow answer is skipped, not waited on


@dataclass
class WorkerParts:
    """What a recipe builds inside an actor."""

    student: Student
    teacher: Teacher
    memory: MemoryStore | None
    make_episode: Callable[[EpisodeJob], Episode]
    meter: Meter | None = None
    close: Callable[[], None] | None = None


class EpisodeActor:
    """The body of one Ray actor: builds its worker once, then runs one episode per call."""

    def __init__(self, recipe: Callable[[], WorkerParts], settings: AgentSettings, run: RunSettings, out: str, memory_target: str | None) -> None:
        started = time.perf_counter()
        self._current: tuple[str, LaneBandit] | None = None  # the running episode's key and lanes (for `choice`)
        self.error: str | None = None
        self.worker: EpisodeWorker | None = None
        try:
            self.parts = recipe()
            self._checkpoints = open_checkpointer(Path(out), memory_target)
            checkpointer = self._checkpoints.__enter__()
            self.worker = EpisodeWorker(self.parts.student, self.parts.teacher, settings, run, self.parts.memory, self.parts.make_episode, checkpointer, self.parts.meter)
        except Exception as error:  # reported by ready(): the driver stops the run with it
            self.error = f"{type(error).__name__}: {error}"
        self.build_s = time.perf_counter() - started

    def ready(self) -> tuple[str | None, int, float]:
        """Why the actor could not start (None: it did), its process, and how long building its parts took."""
        return self.error, os.getpid(), self.build_s

    def pid(self) -> int:
        return os.getpid()

    def run(self, job: EpisodeJob, bandit: dict[str, Any], totals: list[tuple[str, str, int, float, float]],
            in_flight: Sequence[tuple[str, str, str]] = ()) -> dict[str, Any]:
        assert self.worker is not None, self.error
        lanes = LaneBandit(**bandit)
        lanes.absorb(totals)
        lanes.expect(in_flight)  # the other actors' episodes still running
        self._current = (job.task_id, lanes)
        try:
            return self.worker.run(job, lanes)
        finally:
            self._current = None

    def choice(self) -> list[tuple[str, str, str]]:
        """The running episode's lane choice as (key, context, lane), once it has made it (asked while `run` runs)."""
        current = self._current
        return [] if current is None else current[1].in_flight(current[0])


@dataclass
class _Flight:
    job: EpisodeJob
    slot: int
    tries: int


class RayPool:
    """`atlas.runner.Pool` on Ray actors (named `atlas-worker-<run id>-<n>` in namespace `atlas`)."""

    def __init__(self, target: Any, settings: AgentSettings, run: RunSettings, out: Path, memory_target: str | None, run_id: str = "") -> None:
        try:
            import ray
        except ImportError:
            raise AtlasError("--ray needs the `ray` package: pip install 'atlas-cl[ray]'") from None
        self.ray = ray
        self._started = False
        began = time.perf_counter()
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "namespace": "atlas"}
            if target.address == "auto":  # a running cluster (RAY_ADDRESS, or one started on this host), else a local one
                ray.init(num_cpus=target.num_cpus, **options)
            else:
                ray.init(address=target.address, **options)
            self._started = True
        cluster_s = time.perf_counter() - began
        self._args = (target.recipe, settings, run, str(out.resolve()), memory_target)
        self._prefix = f"atlas-worker-{run_id or 'run'}"
        self._remote = ray.remote(num_cpus=0, max_concurrency=2, max_restarts=0)(EpisodeActor)  # type: ignore[call-overload]
        self.actors: list[Any] = [None] * target.actors
        self.busy = 0
        self.retried = 0  # episodes run again after their actor died
        self._flights: dict[Any, _Flight] = {}
        self._idle: list[int] = list(range(target.actors))
        starting = [self._start(slot) for slot in range(target.actors)]
        built = self._check_ready(starting)
        # where the start-up went: the cluster's own start (0 when one was running), each first actor's build,
        # and the rest: starting the actors' processes and importing their code, before any build begins
        processes_s = max(0.0, time.perf_counter() - began - cluster_s - max(built, default=0.0))
        self.startup: dict[str, Any] = {"cluster_s": round(cluster_s, 2), "processes_s": round(processes_s, 2), "actors_s": built}

    def _start(self, slot: int) -> Any:
        actor = self._remote.options(name=f"{self._prefix}-{slot}-{os.urandom(3).hex()}", namespace="atlas").remote(*self._args)
        self.actors[slot] = actor
        return actor.ready.remote()

    def _check_ready(self, refs: list[Any]) -> list[float]:
        """Wait for the actors to be built; returns each one's build seconds (in `refs` order)."""
        ready, waiting = self.ray.wait(refs, num_returns=len(refs), timeout=READY_TIMEOUT_S)
        if waiting:
            raise AtlasError(f"{len(waiting)} Ray workers did not start within {READY_TIMEOUT_S:.0f} s; check the cluster (`ray status`)")
        built = []
        for ref in refs:
            error, _pid, build_s = self.ray.get(ref)
            if error:
                self.close()
                raise AtlasError(f"a Ray worker could not start: {error}")
            built.append(round(build_s, 2))
        return built

    def pids(self) -> list[int]:
        return [self.ray.get(actor.pid.remote()) for actor in self.actors]

    def in_flight(self) -> list[tuple[str, str, str]]:
        """The lane choices of the episodes running on the actors (an actor that died meanwhile has none)."""
        asked = [self.actors[flight.slot].choice.remote() for flight in self._flights.values()]
        choices = []
        for ref in asked:
            try:
                choices += self.ray.get(ref, timeout=CHOICE_TIMEOUT_S)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
                continue  # its episode's own result says what happened (`finished` retries it)
        return choices

    def submit(self, job: EpisodeJob, bandit: LaneBandit, tries: int = 0) -> None:
        slot = self._idle.pop(0)
        params = {"lam": bandit.lam, "explore": bandit.explore, "cold_start": bandit.cold_start, "forced": bandit.forced, "seed": bandit.seed}
        ref = self.actors[slot].run.remote(job, params, bandit.totals(), self.in_flight() if not bandit.forced else [])
        self._flights[ref] = _Flight(job, slot, tries)
        self._bandit = bandit
        if tries == 0:
            self.busy += 1

    def finished(self) -> list[tuple[EpisodeJob, dict[str, Any] | BaseException]]:
        ray = self.ray
        while True:
            done, _ = ray.wait(list(self._flights), num_returns=1)
            out = []
            for ref in done:
                flight = self._flights.pop(ref)
                try:
                    out.append((flight.job, ray.get(ref)))
                except ray.exceptions.RayActorError as died:  # the actor's process is gone: retry on a new one
                    if flight.tries >= RETRIES:
                        out.append((flight.job, AtlasError(f"episode {flight.job.episode_id} lost its Ray worker {RETRIES + 1} times: {died}")))
                    else:
                        self.retried += 1
                        self._check_ready([self._start(flight.slot)])
                        self._idle.append(flight.slot)
                        self.submit(flight.job, self._bandit, tries=flight.tries + 1)
                        continue
                except ray.exceptions.RayTaskError as failed:
                    out.append((flight.job, failed.cause if isinstance(failed.cause, BaseException) else failed))
                self._idle.append(flight.slot)
            if out:
                self.busy -= len(out)
                return out

    def close(self) -> None:
        for actor in self.actors:
            if actor is not None:
                self.ray.kill(actor)  # a no-op for an actor already gone
        if self._started:
            self.ray.shutdown()
            self._started = False
