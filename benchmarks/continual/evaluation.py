"""Run learners through a scenario and fill their accuracy matrices.

Every learner of a seed sees the same stream: the same split, the same task order and, pass by
pass, the same mini-batch order (learners that take a task once see its first pass). Training seconds cover `begin_task`..`end_task` only; evaluation after each task
is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.continual.metrics import summarize
from benchmarks.continual.scenarios import Scenario
from policies.learners import ContinualLearner

ONLINE_BATCH_SIZE = 10  # the usual mini-batch of online (single-pass) continual learning


@dataclass(frozen=True)
class TrainingPlan:
    """How a stream is presented: ``online`` means one pass over each task, whatever ``epochs`` says."""

    epochs: int = 10
    batch_size: int = 32
    online: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1, got {self.epochs} and {self.batch_size}")

    @property
    def passes(self) -> int:
        return 1 if self.online else self.epochs


@dataclass(frozen=True)
class LearnerRun:
    learner: str
    seed: int
    acc_matrix: np.ndarray  # R[i][j]: accuracy on task j after training tasks 0..i
    init_acc: np.ndarray  # accuracy on each task before any training
    time_s: float
    memory_bytes: int

    def metrics(self) -> dict[str, float]:
        return summarize(self.acc_matrix, self.init_acc)


def evaluate(learner: ContinualLearner, scenario: Scenario) -> np.ndarray:
    """Accuracy on every task's test set; the task id is passed only where the protocol gives it."""
    task_aware = scenario.protocol == "task-il"
    return np.array([float(np.mean(learner.predict(t.X_test, t.task_id if task_aware else None) == t.y_test)) for t in scenario.tasks])


def run_learner(name: str, learner: ContinualLearner, scenario: Scenario, seed: int, plan: TrainingPlan,
                on_task: Callable[[], None] | None = None) -> LearnerRun:
    """Train a fresh copy of ``learner`` (seeded with ``seed``) task by task and evaluate after each."""
    fresh = learner.clone(random_state=seed) if "random_state" in learner.get_params() else learner.clone()
    fresh.setup(scenario.spec(plan.passes, plan.batch_size))
    init_acc = evaluate(fresh, scenario)
    matrix = np.zeros((len(scenario.tasks), len(scenario.tasks)))
    seconds = 0.0
    for task in scenario.tasks:
        started = time.perf_counter()
        fresh.begin_task(task.task_id, task.classes)
        for epoch in range(plan.passes if fresh.multi_epoch else 1):
            fresh.begin_epoch(epoch)
            order = np.random.default_rng([seed, 104729, task.task_id, epoch]).permutation(len(task.y_train))
            for start in range(0, len(order), plan.batch_size):
                batch = order[start:start + plan.batch_size]
                fresh.observe(task.X_train[batch], task.y_train[batch], task.task_id)
        fresh.end_task(task.task_id)
        seconds += time.perf_counter() - started
        matrix[task.task_id] = evaluate(fresh, scenario)
        if on_task:
            on_task()
    return LearnerRun(name, seed, matrix, init_acc, seconds, fresh.memory_bytes())


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Small MLPs train faster on one thread (about 1.4x here); the caller's setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def compare(learners: Mapping[str, ContinualLearner], scenario_for_seed: Callable[[int], Scenario], seeds: Sequence[int],
            plan: TrainingPlan, on_task: Callable[[], None] | None = None) -> list[LearnerRun]:
    """Every learner on every seed's scenario (built once per seed and shared by the learners)."""
    runs = []
    with one_torch_thread():
        for seed in seeds:
            scenario = scenario_for_seed(seed)
            for name, learner in learners.items():
                runs.append(run_learner(name, learner, scenario, seed, plan, on_task))
    return runs
