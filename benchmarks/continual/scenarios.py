"""Continual-learning scenarios: a sequence of tasks, each with its own train and test split, and
the protocols a scenario supports (van de Ven & Tolias 2019, "Three scenarios for continual
learning").

- split-digits: scikit-learn's 8x8 digits as 5 tasks of 2 classes (0/1, 2/3, ...); task-IL (the
  task id is given when predicting) or class-IL (choose among every class seen).
- permuted-digits: the same 10-class problem under a fixed pixel permutation per task (the first
  task unpermuted); domain-IL.
- text-domains: IMDB, then Rotten Tomatoes sentiment on frozen MiniLM sentence vectors; domain-IL
  (see `benchmarks.continual.text`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from atlas.errors import AtlasError
from policies.learners.base import StreamSpec

SCENARIOS: dict[str, tuple[str, ...]] = {  # name -> protocols it supports, the default first
    "split-digits": ("class-il", "task-il"),
    "permuted-digits": ("domain-il",),
    "text-domains": ("domain-il",),
}
TEST_FRACTION = 0.3
SPLIT_DIGITS_CLASSES = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))  # one task per pair, in this order


class ScenarioError(AtlasError, ValueError):
    """A scenario, protocol or scenario option that does not exist; the message lists the valid ones."""


@dataclass(frozen=True)
class Task:
    task_id: int
    name: str
    classes: tuple[int, ...]
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Scenario:
    name: str
    protocol: str
    tasks: tuple[Task, ...]
    n_features: int
    n_classes: int

    def spec(self, epochs: int, batch_size: int) -> StreamSpec:
        heads = tuple(task.classes for task in self.tasks) if self.protocol == "task-il" else None
        return StreamSpec(self.n_features, self.n_classes, self.protocol, heads, epochs, batch_size)


def check_scenario(name: str, protocol: str | None = None) -> str:
    """The protocol to use for ``name`` (its default when None); a clear error for anything unsupported."""
    if name not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    supported = SCENARIOS[name]
    if protocol is None:
        return supported[0]
    if protocol not in supported:
        raise ScenarioError(f"scenario {name} does not support protocol {protocol!r}; it supports {', '.join(supported)}")
    return protocol


def _digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)  # pixel intensities 0..16 -> 0..1
    return train_test_split(X, y.astype(np.int64), test_size=TEST_FRACTION, stratify=y, random_state=seed)


def split_digits(protocol: str = "class-il", seed: int = 0) -> Scenario:
    protocol = check_scenario("split-digits", protocol)
    X_train, X_test, y_train, y_test = _digits(seed)
    tasks = []
    for task_id, classes in enumerate(SPLIT_DIGITS_CLASSES):
        train, test = np.isin(y_train, classes), np.isin(y_test, classes)
        tasks.append(Task(task_id, f"{classes[0]}/{classes[1]}", classes, X_train[train], y_train[train], X_test[test], y_test[test]))
    return Scenario("split-digits", protocol, tuple(tasks), X_train.shape[1], 10)


def permuted_digits(n_tasks: int = 5, seed: int = 0, protocol: str = "domain-il") -> Scenario:
    protocol = check_scenario("permuted-digits", protocol)
    if n_tasks < 2:
        raise ScenarioError(f"permuted-digits needs at least 2 tasks, got {n_tasks}")
    X_train, X_test, y_train, y_test = _digits(seed)
    rng = np.random.default_rng([seed, 7919])
    tasks = []
    for task_id in range(n_tasks):
        order = np.arange(X_train.shape[1]) if task_id == 0 else rng.permutation(X_train.shape[1])
        tasks.append(Task(task_id, "original" if task_id == 0 else f"permutation {task_id}", tuple(range(10)),
                          X_train[:, order], y_train, X_test[:, order], y_test))
    return Scenario("permuted-digits", protocol, tuple(tasks), X_train.shape[1], 10)
