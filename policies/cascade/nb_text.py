"""The default cheap level: NB-weighted logistic regression on hashed word n-grams (NBSVM-style, Wang and
Manning 2012), learned online. Binary word 1-2-gram features (no vocabulary: hashing) are scaled by
log-count ratios counted over the LLM-labelled items seen so far, and a logistic regression is refitted
by SGD over all of them (the level keeps their sparse rows) whenever their number has grown by
`growth`; in between, new labels take one SGD pass. K classes: one-vs-rest heads, each with its own
ratios. A second head, a logistic regression on latent topics of the answered texts (`topics.py`, fitted
without labels), joins the first as a product of experts (its log-probabilities weighted by `topics_weight`):
with few labels it generalises across words that occur together. Nothing is fitted on an item before the
cascade has answered it: the level learns labels in `partial_fit` and topics in `observe`, both of which
the cascade calls after a batch is answered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier

from policies.cascade.base import full_proba, uniform
from policies.cascade.topics import LatentTopics

TOKENS = r"(?u)\b\w+\b|[!?]"


class NBTextLevel:
    keeps_history = True  # the cascade gives it only fresh labels: it replays all of them itself

    learns = True

    def __init__(self, classes: int = 2, n_features: int = 2**20, ngrams: tuple[int, int] = (1, 2), alpha: float = 1e-5,
                 epochs: int = 15, growth: float = 0.05, min_new: int = 16, smoothing: float = 1.0, cost: float = 1.0,
                 seed: int = 0, name: str = "nb_lr", topics: int = 100, topics_weight: float = 0.5) -> None:
        if classes < 2:
            raise ValueError(f"a level needs at least 2 classes, got {classes}")
        if not 0 < growth <= 10 or epochs < 1 or min_new < 1 or smoothing <= 0:
            raise ValueError("NBTextLevel needs 0 < growth <= 10, epochs >= 1, min_new >= 1 and smoothing > 0")
        if topics < 0 or topics == 1 or topics_weight < 0:
            raise ValueError(f"NBTextLevel needs topics 0 (none) or >= 2 and topics_weight >= 0, got {topics} and {topics_weight}")
        self.name = name
        self.classes = classes
        self.cost = cost
        self.alpha = alpha
        self.epochs = epochs
        self.growth = growth
        self.min_new = min_new
        self.smoothing = smoothing
        self.seed = seed
        self.vectorizer = HashingVectorizer(n_features=n_features, ngram_range=ngrams, alternate_sign=False, norm=None,
                                            binary=True, token_pattern=TOKENS)
        self.counts_ = np.zeros((classes, n_features))
        self.class_counts_ = np.zeros(classes)
        self.rows_: list[sp.csr_matrix] = []
        self.labels_: list[np.ndarray] = []
        self.n_seen_ = 0
        self.fitted_at_ = 0
        self.heads_: list[tuple[np.ndarray, SGDClassifier | None]] = []  # (ratios, model) per head
        self.scale_ = 1.0
        self._last: tuple[dict[str, int], sp.csr_matrix] | None = None
        self.topics_weight = topics_weight
        self.topics_ = LatentTopics(topics, seed=seed) if topics else None
        self.texts_: list[str] = []  # the labelled texts, in label order (their topic vectors change when the topics are refitted)
        self.topic_rows_: list[np.ndarray] = []  # their topic vectors, in blocks (joined when the head is fitted)
        self.topic_head_: LogisticRegression | None = None

    # --- features ---------------------------------------------------------------------------------
    def _binary(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Binary n-gram rows; the batch just answered is learned next (all of it or the LLM-labelled
        part), so its rows are kept and reused instead of vectorising the same texts twice."""
        if self._last is not None:
            rows = self._last[0]
            if all(text in rows for text in texts):
                return self._last[1][[rows[text] for text in texts]]
        matrix = self.vectorizer.transform(texts).tocsr()
        self._last = ({text: row for row, text in enumerate(texts)}, matrix)
        return matrix

    def _head_targets(self) -> list[int]:
        return [1] if self.classes == 2 else list(range(self.classes))

    def _ratios(self, target: int) -> np.ndarray:
        mine = self.counts_[target] + self.smoothing
        rest = self.counts_.sum(axis=0) - self.counts_[target] + self.smoothing
        return np.log(mine / mine.sum()) - np.log(rest / rest.sum())

    # --- scikit-learn surface ---------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not self.heads_:
            return uniform(len(texts), self.classes)
        binary = self._binary(texts)
        scores = np.column_stack([np.zeros(binary.shape[0]) if model is None else model.predict_proba(binary.multiply(ratios).tocsr() * self.scale_)[:, 1]
                                  for ratios, model in self.heads_])
        if self.classes == 2:
            probs = np.column_stack([1.0 - scores[:, 0], scores[:, 0]])
        else:
            scores = np.clip(scores, 1e-9, None)
            probs = scores / scores.sum(axis=1, keepdims=True)
        if self.topic_head_ is None or not len(texts):
            return probs
        assert self.topics_ is not None
        topical = full_proba(self.topic_head_.predict_proba(self.topics_.transform(texts)), self.topic_head_.classes_, self.classes)
        logits = np.log(np.clip(probs, 1e-9, None)) + self.topics_weight * np.log(np.clip(topical, 1e-9, None))
        joint = np.exp(logits - logits.max(axis=1, keepdims=True))
        return joint / joint.sum(axis=1, keepdims=True)

    def observe(self, texts: Sequence[str]) -> None:
        """Texts the cascade has answered, labelled or not: the topics learn from them."""
        if self.topics_ is not None and self.topics_.observe(texts):
            self.topic_rows_ = [self.topics_.transform(self.texts_)] if self.texts_ else []
            self._fit_topic_head()

    def partial_fit(self, texts: Sequence[str], labels: Sequence[int]) -> None:
        if not len(texts):
            return
        y = np.asarray(labels, dtype=int)
        if y.min() < 0 or y.max() >= self.classes:
            raise ValueError(f"labels must be in 0..{self.classes - 1}, got {sorted(set(y.tolist()))}")
        binary = self._binary(texts)
        for k in range(self.classes):
            mask = y == k
            if mask.any():
                self.counts_[k] += np.asarray(binary[mask].sum(axis=0)).ravel()
        new_class = bool(((self.class_counts_ == 0) & (np.bincount(y, minlength=self.classes) > 0)).any())
        self.class_counts_ += np.bincount(y, minlength=self.classes)
        self.rows_.append(binary)
        self.labels_.append(y)
        self.n_seen_ += len(y)
        if self.topics_ is not None:
            self.texts_.extend(texts)
            if self.topics_.ready:
                self.topic_rows_.append(self.topics_.transform(texts))
        if (self.class_counts_ > 0).sum() < 2:
            return  # one class so far: nothing to separate yet
        if not self.heads_ or new_class or self.n_seen_ - self.fitted_at_ >= max(self.min_new, self.growth * self.fitted_at_):
            self._refit()
        else:
            self._update(binary, y)

    def _update(self, binary: sp.csr_matrix, y: np.ndarray) -> None:
        """One SGD pass over new labels with the current ratios (refits recompute the ratios)."""
        for target, (ratios, model) in zip(self._head_targets(), self.heads_):
            if model is not None:
                model.partial_fit(binary.multiply(ratios).tocsr() * self.scale_, (y == target).astype(int), classes=np.array([0, 1]))

    def _refit(self) -> None:
        everything = sp.vstack(self.rows_, format="csr")
        y = np.concatenate(self.labels_)
        self.rows_, self.labels_ = [everything], [y]
        self.scale_ = 1.0 / np.sqrt(max(1.0, everything.getnnz(axis=1).mean()))
        heads = []
        for target in self._head_targets():
            ratios = self._ratios(target)
            if self.class_counts_[target] == 0 or self.class_counts_[target] == len(y):
                heads.append((ratios, None))  # a class never seen yet (K > 2): no evidence for it
                continue
            model = SGDClassifier(loss="log_loss", alpha=self.alpha, max_iter=self.epochs, tol=None, random_state=self.seed)
            model.fit(everything.multiply(ratios).tocsr() * self.scale_, (y == target).astype(int))
            heads.append((ratios, model))
        self.heads_ = heads
        self.fitted_at_ = self.n_seen_
        self._fit_topic_head()

    def _fit_topic_head(self) -> None:
        """The topic head, refitted on every labelled item (with the NB heads, and when the topics change)."""
        if self.topics_ is None or not self.topics_.ready or not self.labels_:
            return
        y = np.concatenate(self.labels_)
        if len(np.unique(y)) < 2:
            return
        self.topic_rows_ = [np.vstack(self.topic_rows_)]
        self.topic_head_ = LogisticRegression(C=10.0, max_iter=1000).fit(self.topic_rows_[0], y)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_last": None}
