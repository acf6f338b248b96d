"""Nearest class mean (gradient-free): keep a running sum and count per class and label an input
by its closest class mean. Each class's mean depends only on that class's examples, so learning a
new task cannot disturb an old one."""

from __future__ import annotations

import numpy as np

from policies.learners.base import ContinualLearner, StreamSpec, nbytes


class NearestClassMean(ContinualLearner):
    multi_epoch = False

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = normalize  # compare unit vectors (cosine geometry), as iCaRL does

    def _setup(self, spec: StreamSpec) -> None:
        self.sums_ = np.zeros((spec.n_classes, spec.n_features))
        self.counts_ = np.zeros(spec.n_classes)

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.normalize:
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        return X

    def learn(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        np.add.at(self.sums_, np.asarray(y), self._prepare(X))
        self.counts_ += np.bincount(y, minlength=len(self.counts_))

    def decision_function(self, X: np.ndarray, allowed: list[int]) -> np.ndarray:
        seen = self.counts_ > 0
        means = self.sums_[seen] / self.counts_[seen, None]
        if self.normalize:
            means = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        scores = np.full((len(X), len(self.counts_)), -np.inf)
        X = self._prepare(X)
        distances = (X**2).sum(1)[:, None] - 2 * X @ means.T + (means**2).sum(1)[None, :]
        scores[:, seen] = -distances
        return scores

    def memory_bytes(self) -> int:
        return nbytes(self.sums_, self.counts_)
