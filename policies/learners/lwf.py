"""Learning without forgetting (Li & Hoiem 2017): keep a frozen copy of the network from the end of
the last task and distil its softened outputs on the classes of earlier tasks into the new network,
using only the current task's inputs. No examples are stored."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from policies.learners.base import StreamSpec, nbytes
from policies.learners.network import MLP, NetworkLearner, masked_cross_entropy


class LwF(NetworkLearner):
    def __init__(self, alpha: float = 1.0, temperature: float = 2.0,
                 hidden: tuple[int, ...] = (100, 100), lr: float = 1e-3, optimizer: str = "adam",
                 random_state: int = 0) -> None:
        super().__init__(hidden=hidden, lr=lr, optimizer=optimizer, random_state=random_state)
        self.alpha = alpha
        self.temperature = temperature

    def _setup(self, spec: StreamSpec) -> None:
        super()._setup(spec)
        self.teacher_: MLP | None = None
        self.old_groups_: list[list[int]] = []  # class groups whose old outputs are distilled

    def end_task(self, task_id: int) -> None:
        self.teacher_ = copy.deepcopy(self.net_).eval()
        if self.spec_.protocol == "task-il":
            self.old_groups_ = [list(self.spec_.task_heads[t]) for t in sorted(self.task_classes_)]
        else:
            self.old_groups_ = [self.allowed_classes(None)]

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.net_(x)
        loss = masked_cross_entropy(logits, y, mask)
        if self.teacher_ is None:
            return loss
        with torch.no_grad():
            old = self.teacher_(x)
        t = self.temperature
        for group in self.old_groups_:
            student = F.log_softmax(logits[:, group] / t, dim=1)
            teacher = F.softmax(old[:, group] / t, dim=1)
            loss = loss + self.alpha * F.kl_div(student, teacher, reduction="batchmean") * t * t
        return loss

    def extra_bytes(self) -> int:
        return nbytes(list(self.teacher_.parameters())) if self.teacher_ is not None else 0
