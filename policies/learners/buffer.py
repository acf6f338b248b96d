"""A fixed-size reservoir of examples (Vitter's algorithm R): every example seen so far has the
same chance of being kept, and the buffer never grows past its size."""

from __future__ import annotations

import numpy as np


class Reservoir:
    def __init__(self, size: int, n_features: int, rng: np.random.Generator) -> None:
        if size < 1:
            raise ValueError(f"buffer size must be at least 1, got {size}")
        self.size = size
        self.X = np.zeros((size, n_features), dtype=np.float32)
        self.y = np.zeros(size, dtype=np.int64)
        self.task = np.zeros(size, dtype=np.int64)
        self.seen = 0
        self._rng = rng

    def __len__(self) -> int:
        return min(self.seen, self.size)

    def add(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        for row, label in zip(X, y):
            slot = self.seen if self.seen < self.size else int(self._rng.integers(self.seen + 1))
            self.seen += 1
            if slot < self.size:
                self.X[slot], self.y[slot], self.task[slot] = row, label, task_id

    def sample(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to ``k`` stored examples drawn without replacement: (X, y, task ids)."""
        picked = self._rng.choice(len(self), size=min(k, len(self)), replace=False)
        return self.X[picked], self.y[picked], self.task[picked]

    def stored(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(self)
        return self.X[:n], self.y[:n], self.task[:n]

    @property
    def nbytes(self) -> int:
        return self.X.nbytes + self.y.nbytes + self.task.nbytes
