"""One level class for any scikit-learn estimator with `partial_fit` over any featurizer (hashed text,
sentence vectors...). Features of texts are cached only while they are still needed (the current batch
and the replay buffer), so the cache stays bounded on an endless stream."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone

from policies.cascade.base import full_proba, uniform

Featurizer = Callable[[Sequence[str]], Any]  # texts -> 2-D array or sparse matrix, one row per text


class SklearnLevel:
    """`estimator` must offer `partial_fit(X, y, classes=...)` and `predict_proba`; it is cloned, so
    the caller's object is never changed. With `cache=True` feature rows are kept per text until
    `forget(keep)` drops those not in `keep` (the cascade calls it after every batch)."""

    learns = True

    def __init__(self, estimator: Any, featurize: Featurizer, classes: int = 2, cost: float = 1.0,
                 name: str = "sklearn", cache: bool = False) -> None:
        if classes < 2:
            raise ValueError(f"a level needs at least 2 classes, got {classes}")
        if not hasattr(estimator, "partial_fit") or not hasattr(estimator, "predict_proba"):
            raise TypeError(f"{type(estimator).__name__} has no partial_fit/predict_proba; use an online probabilistic estimator "
                            "such as SGDClassifier(loss='log_loss')")
        self.name = name
        self.classes = classes
        self.cost = cost
        self.featurize = featurize
        self.model_ = clone(estimator)
        self.n_seen_ = 0
        self.cache = cache
        self._rows: dict[str, Any] = {}

    def features(self, texts: Sequence[str]) -> Any:
        if not self.cache:
            return self.featurize(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._rows]
        if missing:
            block = self.featurize(missing)
            if sp.issparse(block):
                block = sp.csr_matrix(block)
            for k, text in enumerate(missing):
                self._rows[text] = block[k]
        rows = [self._rows[t] for t in texts]
        return sp.vstack(rows, format="csr") if sp.issparse(rows[0]) else np.stack(rows)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.n_seen_ == 0 or not hasattr(self.model_, "classes_"):
            return uniform(len(texts), self.classes)
        return full_proba(self.model_.predict_proba(self.features(texts)), self.model_.classes_, self.classes)

    def partial_fit(self, texts: Sequence[str], labels: Sequence[int]) -> None:
        if len(texts):
            self.model_.partial_fit(self.features(texts), np.asarray(labels), classes=np.arange(self.classes))
            self.n_seen_ += len(texts)

    def forget(self, keep: Sequence[str]) -> None:
        """Drop cached features except those still needed (the replay buffer's texts)."""
        if self._rows:
            wanted = set(keep)
            self._rows = {t: v for t, v in self._rows.items() if t in wanted}

    @property
    def cached(self) -> int:
        return len(self._rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": {}}  # a saved level carries what it learned, not its cache
