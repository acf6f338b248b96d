"""Level 1 (the old default): logistic regression on hashed word n-grams; no vocabulary is fitted ahead."""

from __future__ import annotations

from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier

from policies.cascade.sklearn_level import SklearnLevel


class HashedTextLevel(SklearnLevel):
    """HashingVectorizer word 1-2-grams + SGD logistic regression, trained only on labels the LLM gave."""

    def __init__(self, classes: int = 2, n_features: int = 2**18, alpha: float = 1e-5, cost: float = 1.0, seed: int = 0,
                 name: str = "hashed_lr") -> None:
        self.vectorizer = HashingVectorizer(n_features=n_features, ngram_range=(1, 2), alternate_sign=False, norm="l2")
        super().__init__(SGDClassifier(loss="log_loss", alpha=alpha, random_state=seed), self.vectorizer.transform,
                         classes=classes, cost=cost, name=name)
