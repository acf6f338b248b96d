"""The one surface every continual learner offers, and the class bookkeeping they all share.

A learner is set up for a stream (`setup`), told where tasks and passes begin and end
(`begin_task`, `begin_epoch`, `end_task`), fed mini-batches (`observe`, which checks them and hands
them to the method's `learn`) and asked for labels (`predict`). Which classes a
prediction may choose from depends on the protocol: the task's own classes in task-incremental
learning (the task id picks the head), every class seen so far in class-incremental learning, and
every class in domain-incremental learning.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

PROTOCOLS = ("task-il", "class-il", "domain-il")
LOWEST = np.finfo(np.float64).min


@dataclass(frozen=True)
class StreamSpec:
    """What a learner may know before the stream starts."""

    n_features: int
    n_classes: int
    protocol: str
    heads: tuple[tuple[int, ...], ...] | None = None  # task-IL only: the classes behind each task id
    epochs: int = 1  # passes over a task's data (learners that store data and train later use it)
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.protocol == "task-il" and not self.heads:
            raise ValueError("task-il needs heads: the classes of each task id")
        outside = sorted({c for head in self.heads or () for c in head if not 0 <= c < self.n_classes})
        if outside:
            raise ValueError(f"heads name classes {outside} outside 0..{self.n_classes - 1}")

    @property
    def task_heads(self) -> tuple[tuple[int, ...], ...]:
        """The classes behind each task id: never empty for task-il (checked above), () for the other protocols."""
        return self.heads or ()


class ContinualLearner(ABC):
    """Base class: hyper-parameters in ``__init__``, learned state with a trailing underscore."""

    multi_epoch: ClassVar[bool] = True  # False: the learner takes a task's data once (storing or summing it)

    # -- lifecycle -----------------------------------------------------------------------------
    def setup(self, spec: StreamSpec) -> Self:
        """Forget everything and get ready for a stream described by ``spec``."""
        self.spec_ = spec
        self.task_classes_: dict[int, tuple[int, ...]] = {}
        self.seen_classes_: list[int] = []
        self._setup(spec)
        return self

    def begin_task(self, task_id: int, classes: tuple[int, ...]) -> None:
        self._check_ready("begin_task")
        outside = sorted(c for c in classes if not 0 <= c < self.spec_.n_classes)
        if outside or not classes:
            raise ValueError(f"task {task_id}: classes {list(classes)} must be a non-empty subset of 0..{self.spec_.n_classes - 1}")
        self.task_classes_[task_id] = tuple(classes)
        self.seen_classes_ = sorted(set(self.seen_classes_) | set(classes))
        self.current_task_ = task_id
        self.epoch_ = 0

    def begin_epoch(self, epoch: int) -> None:
        """A new pass over the current task's data; buffers take each example on the first pass only."""
        self.epoch_ = epoch

    def observe(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        """Learn from one mini-batch of the current task (checked first: shapes, task, labels)."""
        self._check_ready("observe")
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64)
        if X.ndim != 2 or X.shape[1] != self.spec_.n_features or len(X) != len(y):
            raise ValueError(f"observe: expected X of shape (n, {self.spec_.n_features}) and n labels, got {X.shape} and {y.shape}")
        if task_id != getattr(self, "current_task_", None):
            raise ValueError(f"observe: task {task_id} was not begun; call begin_task({task_id}, classes) first")
        stray = sorted(set(y.tolist()) - set(self.task_classes_[task_id]))
        if stray:
            raise ValueError(f"observe: labels {stray} are not among task {task_id}'s classes {list(self.task_classes_[task_id])}")
        if len(y):
            self.learn(X, y, task_id)

    @abstractmethod
    def _setup(self, spec: StreamSpec) -> None:
        """The method's own state for a new stream (called by ``setup`` after the shared bookkeeping)."""

    @abstractmethod
    def learn(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        """The method's own update on a checked mini-batch."""

    def end_task(self, task_id: int) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Consolidate at a task boundary (a no-op for methods that need none)."""

    def predict(self, X: np.ndarray, task_id: int | None = None) -> np.ndarray:
        """Labels chosen among the classes the protocol allows (see the module docstring)."""
        self._check_ready("predict")
        if self.spec_.protocol == "task-il" and (task_id is None or not 0 <= task_id < len(self.spec_.task_heads)):
            raise ValueError(f"task-il predictions need a task id in 0..{len(self.spec_.task_heads) - 1}, got {task_id}")
        allowed = self.allowed_classes(task_id)
        scores = np.asarray(self.decision_function(np.asarray(X, dtype=np.float32), allowed), dtype=np.float64)
        masked = np.full_like(scores, -np.inf)
        # an allowed class always beats a masked one, even when a learner has no score for it yet
        masked[:, allowed] = np.nan_to_num(scores[:, allowed], nan=LOWEST, neginf=LOWEST)
        return masked.argmax(axis=1)

    @abstractmethod
    def decision_function(self, X: np.ndarray, allowed: list[int]) -> np.ndarray:
        """Scores of shape (n, n_classes); higher is more likely. Only the ``allowed`` columns are read."""

    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes of state kept between tasks: parameters, statistics, stored examples."""

    def _check_ready(self, step: str) -> None:
        if not hasattr(self, "spec_"):
            raise RuntimeError(f"{type(self).__name__}.{step}: call setup(spec) first")

    # -- which classes ---------------------------------------------------------------------------
    def allowed_classes(self, task_id: int | None) -> list[int]:
        spec = self.spec_
        if spec.protocol == "task-il" and task_id is not None:
            return list(spec.task_heads[task_id])
        if spec.protocol == "class-il" and self.seen_classes_:
            return list(self.seen_classes_)
        return list(range(spec.n_classes))

    def class_mask(self, task_ids: np.ndarray) -> np.ndarray:
        """Boolean (n, n_classes): the classes each example's loss may spread over while training."""
        mask = np.zeros((len(task_ids), self.spec_.n_classes), dtype=bool)
        if self.spec_.protocol == "task-il":
            for task in np.unique(task_ids):
                mask[np.ix_(task_ids == task, self.spec_.task_heads[int(task)])] = True
        else:
            mask[:, self.allowed_classes(None)] = True
        return mask

    # -- scikit-learn style parameters -----------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def clone(self, **overrides: Any) -> Self:
        """A fresh, unfitted learner with the same hyper-parameters (and any overrides)."""
        return type(self)(**{**self.get_params(), **overrides})

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def nbytes(*arrays: Any) -> int:
    """Total bytes of numpy arrays, torch tensors, or lists of them (None counts as nothing)."""
    total = 0
    for array in arrays:
        if array is None:
            continue
        if isinstance(array, (list, tuple)):
            total += nbytes(*array)
        elif hasattr(array, "element_size"):
            total += array.element_size() * array.nelement()
        else:
            total += int(np.asarray(array).nbytes)
    return total
