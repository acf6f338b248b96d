"""The small torch MLP every weight-based learner trains, and the training step they share.

`NetworkLearner` is plain fine-tuning: one Adam step per mini-batch on a cross-entropy restricted
to the classes the protocol makes active. Methods against forgetting override one hook each:
`penalty` (EWC, SI), `loss` (LwF), `learn` (replay, A-GEM), `before_update`/`after_update` (A-GEM, SI).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from policies.learners.base import ContinualLearner, StreamSpec, nbytes


class MLP(nn.Module):
    def __init__(self, n_features: int, hidden: Sequence[int], n_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def masked_cross_entropy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over each example's active classes only (the others get no probability)."""
    return F.cross_entropy(logits.masked_fill(~mask, float("-inf")), y)


def gradient(p: torch.Tensor) -> torch.Tensor:
    """A parameter's gradient, as ``backward`` left it (the update hooks run only after it)."""
    assert p.grad is not None, "no gradient: the hooks run between backward and the optimiser step"
    return p.grad


OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


class NetworkLearner(ContinualLearner):
    """Naive fine-tuning of an MLP (Adam, lr 1e-3, as in van de Ven et al. 2019)."""

    def __init__(self, hidden: tuple[int, ...] = (100, 100), lr: float = 1e-3, optimizer: str = "adam", random_state: int = 0) -> None:
        self.hidden = hidden
        self.lr = lr
        self.optimizer = optimizer
        self.random_state = random_state

    def _setup(self, spec: StreamSpec) -> None:
        self.rng_ = np.random.default_rng(self.random_state)
        self.net_ = self.new_network(spec)
        self.optimizer_ = self.new_optimizer()

    def new_network(self, spec: StreamSpec) -> MLP:
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
            torch.manual_seed(self.random_state)
            return MLP(spec.n_features, self.hidden, spec.n_classes)

    def new_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[self.optimizer](self.net_.parameters(), lr=self.lr)

    def learn(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        x, target, mask = self.tensors(X, y, np.full(len(y), task_id))
        self.update(x, target, mask)

    def tensors(self, X: np.ndarray, y: np.ndarray, task_ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(np.asarray(X, dtype=np.float32)), torch.as_tensor(np.asarray(y, dtype=np.int64)),
                torch.as_tensor(self.class_mask(np.asarray(task_ids))))

    def update(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> None:
        """One optimiser step on ``loss`` plus ``penalty``."""
        self.net_.train()
        self.optimizer_.zero_grad()
        total = self.loss(x, y, mask) + self.penalty()
        total.backward()
        self.before_update()
        self.optimizer_.step()
        self.after_update()

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_cross_entropy(self.net_(x), y, mask)

    def penalty(self) -> torch.Tensor:
        return torch.zeros(())

    def before_update(self) -> None:
        """Hook between backward and the optimiser step (gradients are in ``p.grad``)."""

    def after_update(self) -> None:
        """Hook after the optimiser step."""

    def decision_function(self, X: np.ndarray, allowed: list[int]) -> np.ndarray:
        self.net_.eval()
        with torch.no_grad():
            return self.net_(torch.as_tensor(X)).numpy()

    def parameters_(self) -> list[torch.Tensor]:
        return [p for p in self.net_.parameters() if p.requires_grad]

    def memory_bytes(self) -> int:
        """Parameters, the optimiser's moments (kept across tasks) and the method's own state."""
        moments = [t for state in self.optimizer_.state.values() for t in state.values() if torch.is_tensor(t)]
        return nbytes(self.parameters_(), moments) + self.extra_bytes()

    def extra_bytes(self) -> int:
        """State a method keeps besides the network (penalty anchors, buffers, a teacher copy)."""
        return 0
