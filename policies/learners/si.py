"""Synaptic intelligence (Zenke, Poole & Ganguli 2017).

Each weight's importance is the loss decrease it caused along its training path (the running sum
of -gradient x step), normalised at the task's end by how far the weight moved (plus ``xi``). A
quadratic penalty with strength ``si_c`` then holds important weights near their values at the end
of the last task. Unlike EWC, nothing is computed after the task: the importance is collected
during training.
"""

from __future__ import annotations

import torch

from policies.learners.base import StreamSpec, nbytes
from policies.learners.network import NetworkLearner, gradient


class SynapticIntelligence(NetworkLearner):
    def __init__(self, si_c: float = 10.0, xi: float = 0.1,
                 hidden: tuple[int, ...] = (100, 100), lr: float = 1e-3, optimizer: str = "adam",
                 random_state: int = 0) -> None:
        super().__init__(hidden=hidden, lr=lr, optimizer=optimizer, random_state=random_state)
        self.si_c = si_c
        self.xi = xi

    def _setup(self, spec: StreamSpec) -> None:
        super()._setup(spec)
        params = self.parameters_()
        self.importance_ = [torch.zeros_like(p) for p in params]
        self.anchor_ = [p.detach().clone() for p in params]
        self.path_ = [torch.zeros_like(p) for p in params]
        self.task_start_ = [p.detach().clone() for p in params]

    def begin_task(self, task_id: int, classes: tuple[int, ...]) -> None:
        super().begin_task(task_id, classes)
        self.task_start_ = [p.detach().clone() for p in self.parameters_()]
        self.path_ = [torch.zeros_like(p) for p in self.parameters_()]

    def before_update(self) -> None:
        # the path integral follows the task loss alone: remove the penalty's gradient 2c*Omega*(theta - anchor)
        params = self.parameters_()
        self._grads = [gradient(p).detach() - 2 * self.si_c * w * (p.detach() - a) for p, w, a in zip(params, self.importance_, self.anchor_)]
        self._before = [p.detach().clone() for p in params]

    def after_update(self) -> None:
        for path, grad, before, p in zip(self.path_, self._grads, self._before, self.parameters_()):
            path -= grad * (p.detach() - before)

    def end_task(self, task_id: int) -> None:
        for importance, path, start, p in zip(self.importance_, self.path_, self.task_start_, self.parameters_()):
            importance += (path / ((p.detach() - start) ** 2 + self.xi)).clamp_min(0.0)  # as Zenke et al.'s code
        self.anchor_ = [p.detach().clone() for p in self.parameters_()]

    def penalty(self) -> torch.Tensor:
        terms = [(w * (p - a) ** 2).sum() for w, p, a in zip(self.importance_, self.parameters_(), self.anchor_)]
        return self.si_c * torch.stack(terms).sum()

    def extra_bytes(self) -> int:
        return nbytes(self.importance_, self.anchor_)
