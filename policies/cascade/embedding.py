"""Level 2: logistic regression on sentence embeddings (MiniLM by default), learned online."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.linear_model import SGDClassifier

from policies.cascade.sklearn_level import SklearnLevel

Encoder = Callable[[Sequence[str]], np.ndarray]


class EmbeddingLevel(SklearnLevel):
    """SGD logistic regression over a frozen encoder's vectors; vectors are cached while the replay
    buffer still holds their text (`forget`, called by the cascade after every batch)."""

    def __init__(self, encode: Encoder, classes: int = 2, alpha: float = 1e-4, cost: float = 5.0, seed: int = 0, name: str = "minilm_lr") -> None:
        self.encode = encode
        super().__init__(SGDClassifier(loss="log_loss", alpha=alpha, random_state=seed), encode, classes=classes, cost=cost,
                         name=name, cache=True)
