"""Analytic ridge regression (gradient-free; in the spirit of ACIL, Zhuang et al. 2022).

Inputs pass a frozen random ReLU expansion; a ridge regression maps the expanded features to
one-hot labels. Its sufficient statistics (the Gram matrix and the feature-label products) are
sums over examples, so each batch is added in closed form and the weights after any task equal
those of a ridge fit on all data seen so far: there is nothing to forget.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from policies.learners.base import ContinualLearner, StreamSpec, nbytes


class AnalyticRidge(ContinualLearner):
    multi_epoch = False

    def __init__(self, alpha: float = 1.0, n_random_features: int = 1000, random_state: int = 0) -> None:
        self.alpha = alpha
        self.n_random_features = n_random_features
        self.random_state = random_state

    def _setup(self, spec: StreamSpec) -> None:
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        rng = np.random.default_rng(self.random_state)
        width = self.n_random_features
        self.projection_ = rng.normal(0.0, 1.0 / np.sqrt(spec.n_features), (spec.n_features, width)) if width else None
        self.bias_ = rng.normal(0.0, 1.0, width) if width else None
        features = (width or spec.n_features) + 1  # + a constant column for the intercept
        self.gram_ = self.alpha * np.eye(features)
        self.cross_ = np.zeros((features, spec.n_classes))
        self.weights_: np.ndarray | None = None

    def features(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.projection_ is not None and self.bias_ is not None:  # both set, or neither (no random features)
            X = np.maximum(X @ self.projection_ + self.bias_, 0.0)
        return np.hstack([X, np.ones((len(X), 1))])

    def learn(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        H = self.features(X)
        self.gram_ += H.T @ H
        np.add.at(self.cross_.T, np.asarray(y), H)  # adds H^T one_hot(y) without building the one-hot matrix
        self.weights_ = None

    def decision_function(self, X: np.ndarray, allowed: list[int]) -> np.ndarray:
        if self.weights_ is None:
            self.weights_ = cho_solve(cho_factor(self.gram_), self.cross_)
        return self.features(X) @ self.weights_

    def memory_bytes(self) -> int:
        return nbytes(self.projection_, self.bias_, self.gram_, self.cross_, self.weights_)
