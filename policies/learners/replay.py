"""Experience replay: every mini-batch is trained together with as many examples drawn from a
reservoir buffer of the past, so old tasks keep pulling on the weights. The buffer is filled by
reservoir sampling and never holds more than ``buffer_size`` examples."""

from __future__ import annotations

import numpy as np

from policies.learners.buffer import Reservoir
from policies.learners.network import NetworkLearner


class ExperienceReplay(NetworkLearner):
    def __init__(self, buffer_size: int = 200,
                 hidden: tuple[int, ...] = (100, 100), lr: float = 1e-3, optimizer: str = "adam",
                 random_state: int = 0) -> None:
        super().__init__(hidden=hidden, lr=lr, optimizer=optimizer, random_state=random_state)
        self.buffer_size = buffer_size

    def _setup(self, spec) -> None:
        super()._setup(spec)
        self.buffer_ = Reservoir(self.buffer_size, spec.n_features, self.rng_)

    def learn(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        batch_X, batch_y, batch_tasks = X, y, np.full(len(y), task_id)
        if len(self.buffer_):
            old_X, old_y, old_tasks = self.buffer_.sample(len(y))
            batch_X, batch_y = np.concatenate([X, old_X]), np.concatenate([y, old_y])
            batch_tasks = np.concatenate([batch_tasks, old_tasks])
        self.update(*self.tensors(batch_X, batch_y, batch_tasks))
        if self.epoch_ == 0:  # each example enters the reservoir once, not once per epoch
            self.buffer_.add(X, y, task_id)

    def extra_bytes(self) -> int:
        return self.buffer_.nbytes
