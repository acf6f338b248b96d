"""Online elastic weight consolidation (Kirkpatrick et al. 2017; online form of Schwarz et al. 2018).

After each task the diagonal Fisher information is estimated on a sample of that task's inputs
(labels drawn from the model's own predictions: the true Fisher) and folded into one running
Fisher, decayed by ``gamma``; a quadratic penalty then holds important weights near their values
at the end of the last task.
"""

from __future__ import annotations

import numpy as np
import torch

from policies.learners.base import StreamSpec, nbytes
from policies.learners.buffer import Reservoir
from policies.learners.network import NetworkLearner, masked_cross_entropy


class OnlineEWC(NetworkLearner):
    def __init__(self, ewc_lambda: float = 30.0, gamma: float = 1.0, fisher_samples: int = 200,
                 hidden: tuple[int, ...] = (100, 100), lr: float = 1e-3, optimizer: str = "adam",
                 random_state: int = 0) -> None:
        super().__init__(hidden=hidden, lr=lr, optimizer=optimizer, random_state=random_state)
        self.ewc_lambda = ewc_lambda
        self.gamma = gamma
        self.fisher_samples = fisher_samples

    def _setup(self, spec: StreamSpec) -> None:
        super()._setup(spec)
        self.fisher_: list[torch.Tensor] | None = None
        self.anchor_: list[torch.Tensor] | None = None
        self.task_sample_: Reservoir | None = None

    def begin_task(self, task_id: int, classes: tuple[int, ...]) -> None:
        super().begin_task(task_id, classes)
        self.task_sample_ = Reservoir(self.fisher_samples, self.spec_.n_features, self.rng_)

    def learn(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        super().learn(X, y, task_id)
        if self.epoch_ == 0:
            assert self.task_sample_ is not None, "begin_task sets the task's sample"
            self.task_sample_.add(X, y, task_id)

    def end_task(self, task_id: int) -> None:
        assert self.task_sample_ is not None, "begin_task sets the task's sample"
        x, _, mask = self.tensors(*self.task_sample_.stored())
        fisher = self._fisher(x, mask)
        self.fisher_ = fisher if self.fisher_ is None else [self.gamma * old + new for old, new in zip(self.fisher_, fisher)]
        self.anchor_ = [p.detach().clone() for p in self.parameters_()]
        self.task_sample_ = None  # the task's examples are not kept

    def _fisher(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Mean squared gradient of the log-likelihood of labels sampled from the model (true Fisher)."""
        params = self.parameters_()
        fisher = [torch.zeros_like(p) for p in params]
        generator = torch.Generator().manual_seed(int(self.rng_.integers(2**31)))
        self.net_.eval()
        for row in range(len(x)):
            logits = self.net_(x[row:row + 1]).masked_fill(~mask[row:row + 1], float("-inf"))
            sampled = torch.multinomial(torch.softmax(logits.detach(), dim=1), 1, generator=generator)[0]
            grads = torch.autograd.grad(masked_cross_entropy(logits, sampled, mask[row:row + 1]), params)
            for total, grad in zip(fisher, grads):
                total += grad.detach() ** 2
        return [f / max(len(x), 1) for f in fisher]

    def penalty(self) -> torch.Tensor:
        if self.fisher_ is None:
            return torch.zeros(())
        assert self.anchor_ is not None  # end_task sets the anchor with the Fisher
        terms = [(f * (p - a) ** 2).sum() for f, p, a in zip(self.fisher_, self.parameters_(), self.anchor_)]
        return 0.5 * self.ewc_lambda * torch.stack(terms).sum()

    def extra_bytes(self) -> int:
        return nbytes(self.fisher_, self.anchor_)
