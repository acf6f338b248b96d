"""Latent topics of the texts a cascade has answered (LSA: TF-IDF, then a truncated SVD), learned without
labels, so that what a level learns from a few LLM labels about some words carries over to the words that
occur beside them. Fitted only on texts the cascade has already answered (`observe`): first once
`first_fit` of them are in, then each time their number has doubled, on a uniform sample (a seeded
reservoir) of at most `max_docs` of them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer


class LatentTopics:
    def __init__(self, components: int = 100, max_docs: int = 6000, first_fit: int = 500, max_features: int = 30000, seed: int = 0) -> None:
        if components < 2 or max_docs < 2 or first_fit < 2 or max_features < 2:
            raise ValueError("LatentTopics needs components, max_docs, first_fit and max_features of at least 2")
        self.components = components
        self.max_docs = max_docs
        self.first_fit = first_fit
        self.max_features = max_features
        self.seed = seed
        self.sample_: list[str] = []
        self.observed_ = 0
        self.tried_at_ = 0  # texts observed at the last fit (or attempt)
        self.vectorizer_: TfidfVectorizer | None = None
        self.svd_: TruncatedSVD | None = None
        self._rng = np.random.default_rng(seed)

    @property
    def ready(self) -> bool:
        return self.svd_ is not None

    def observe(self, texts: Sequence[str]) -> bool:
        """Take texts the cascade has answered; True when the topics were (re)fitted, which makes every
        vector transformed before stale."""
        for text in texts:
            self.observed_ += 1
            if len(self.sample_) < self.max_docs:
                self.sample_.append(text)
            else:
                slot = int(self._rng.integers(self.observed_))
                if slot < self.max_docs:
                    self.sample_[slot] = text
        if self.observed_ < max(self.first_fit, 2 * self.tried_at_):
            return False
        self.tried_at_ = self.observed_
        return self._fit()

    def _fit(self) -> bool:
        vectorizer = TfidfVectorizer(min_df=2, max_df=0.5, sublinear_tf=True, max_features=self.max_features)
        try:
            matrix = vectorizer.fit_transform(self.sample_)
        except ValueError:  # no word in 2 texts and under half of them (e.g. a stream of one repeated text): try again at the next doubling
            return False
        components = min(self.components, matrix.shape[1] - 1, matrix.shape[0] - 1)
        if components < 2:
            return False
        self.vectorizer_ = vectorizer
        self.svd_ = TruncatedSVD(components, n_iter=4, random_state=self.seed).fit(matrix)
        return True

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length topic vectors (a text with no known word: zeros)."""
        if self.vectorizer_ is None or self.svd_ is None:
            raise RuntimeError("the topics are not fitted yet: check `ready` first")
        vectors = self.svd_.transform(self.vectorizer_.transform(texts))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)
