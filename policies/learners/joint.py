"""Joint training, the non-continual reference: keep every example and, at each task boundary,
train a fresh network on all data seen so far for the stream's epochs. Its last row of the
accuracy matrix is the upper bound the continual methods are measured against."""

from __future__ import annotations

import numpy as np

from policies.learners.base import nbytes
from policies.learners.network import NetworkLearner


class JointTraining(NetworkLearner):
    multi_epoch = False  # it stores a task's data once and trains at the boundary

    def _setup(self, spec) -> None:
        super()._setup(spec)
        self.X_: list[np.ndarray] = []
        self.y_: list[np.ndarray] = []
        self.tasks_: list[np.ndarray] = []

    def learn(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        self.X_.append(np.asarray(X, dtype=np.float32))
        self.y_.append(np.asarray(y))
        self.tasks_.append(np.full(len(y), task_id))

    def end_task(self, task_id: int) -> None:
        if not self.y_:
            return  # nothing seen yet: the network stays as initialised
        X, y, tasks = np.concatenate(self.X_), np.concatenate(self.y_), np.concatenate(self.tasks_)
        self.net_ = self.new_network(self.spec_)
        self.optimizer_ = self.new_optimizer()
        size = self.spec_.batch_size
        for _ in range(self.spec_.epochs):
            order = self.rng_.permutation(len(y))
            for start in range(0, len(y), size):
                batch = order[start:start + size]
                self.update(*self.tensors(X[batch], y[batch], tasks[batch]))

    def extra_bytes(self) -> int:
        return nbytes(self.X_, self.y_, self.tasks_)
