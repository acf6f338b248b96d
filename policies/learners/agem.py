"""Averaged gradient episodic memory, A-GEM (Chaudhry et al. 2019).

An episodic memory keeps examples of finished tasks, an equal share per task within
``buffer_size``. Before each step the gradient on a sample of that memory is computed; when the
current gradient points against it (negative dot product), the current gradient is projected so
that the loss on the memory does not increase to first order.
"""

from __future__ import annotations

import numpy as np
import torch

from policies.learners.buffer import Reservoir
from policies.learners.base import StreamSpec
from policies.learners.network import NetworkLearner, gradient, masked_cross_entropy


class AGEM(NetworkLearner):
    def __init__(self, buffer_size: int = 200, reference_size: int = 64,
                 hidden: tuple[int, ...] = (100, 100), lr: float = 1e-3, optimizer: str = "adam",
                 random_state: int = 0) -> None:
        super().__init__(hidden=hidden, lr=lr, optimizer=optimizer, random_state=random_state)
        self.buffer_size = buffer_size
        self.reference_size = reference_size

    def _setup(self, spec: StreamSpec) -> None:
        super()._setup(spec)
        self.memory_: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.incoming_: Reservoir | None = None
        self.reference_: list[torch.Tensor] | None = None

    def begin_task(self, task_id: int, classes: tuple[int, ...]) -> None:
        super().begin_task(task_id, classes)
        self.incoming_ = Reservoir(self.buffer_size, self.spec_.n_features, self.rng_)

    def learn(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        self.reference_ = self._memory_gradient() if self.memory_size() else None
        super().learn(X, y, task_id)
        if self.epoch_ == 0:
            assert self.incoming_ is not None, "begin_task sets the incoming buffer"
            self.incoming_.add(X, y, task_id)

    def _memory_gradient(self) -> list[torch.Tensor]:
        X, y, tasks = self._memory_sample()
        x, target, mask = self.tensors(X, y, tasks)
        self.net_.train()
        return [g.detach() for g in torch.autograd.grad(masked_cross_entropy(self.net_(x), target, mask), self.parameters_())]

    def _memory_sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = np.concatenate([m[0] for m in self.memory_.values()])
        y = np.concatenate([m[1] for m in self.memory_.values()])
        tasks = np.concatenate([np.full(len(m[1]), t) for t, m in self.memory_.items()])
        picked = self.rng_.choice(len(y), size=min(self.reference_size, len(y)), replace=False)
        return X[picked], y[picked], tasks[picked]

    def before_update(self) -> None:
        if self.reference_ is None:
            return
        grads = [gradient(p) for p in self.parameters_()]
        dot = sum((g * r).sum() for g, r in zip(grads, self.reference_))
        if dot < 0:
            scale = dot / sum((r * r).sum() for r in self.reference_)
            for g, r in zip(grads, self.reference_):
                g -= scale * r  # in place: the parameter's own gradient tensor

    def end_task(self, task_id: int) -> None:
        assert self.incoming_ is not None, "begin_task sets the incoming buffer"
        X, y, _ = self.incoming_.stored()
        self.memory_[task_id] = (X.copy(), y.copy())
        quota = self.buffer_size // len(self.memory_)  # equal share per task; older tasks give some up
        if quota == 0:
            raise ValueError(f"A-GEM buffer_size {self.buffer_size} is smaller than the number of tasks ({len(self.memory_)}); "
                             "it needs at least one example per task")
        self.memory_ = {t: self._subsample(mX, my, quota) for t, (mX, my) in self.memory_.items()}
        self.incoming_ = None

    def _subsample(self, X: np.ndarray, y: np.ndarray, quota: int) -> tuple[np.ndarray, np.ndarray]:
        """A uniform subset of ``quota`` examples (a prefix would favour early arrivals)."""
        if len(y) <= quota:
            return X, y
        keep = np.sort(self.rng_.choice(len(y), size=quota, replace=False))
        return X[keep], y[keep]

    def memory_size(self) -> int:
        return sum(len(my) for _, my in self.memory_.values())

    def extra_bytes(self) -> int:
        return sum(mX.nbytes + my.nbytes for mX, my in self.memory_.values())
