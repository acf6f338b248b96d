"""k nearest neighbours over a FAISS memory (gradient-free): every training example is stored in an
exact L2 index; an input gets the majority label of its ``n_neighbors`` nearest stored examples.
In task-incremental prediction the search is restricted to the task's classes with a FAISS ID
selector. Memory grows with the stream: that is the price, and `memory_bytes` shows it."""

from __future__ import annotations

import faiss
import numpy as np

from policies.learners.base import ContinualLearner, StreamSpec


class KNearestNeighbours(ContinualLearner):
    multi_epoch = False

    def __init__(self, n_neighbors: int = 5) -> None:
        self.n_neighbors = n_neighbors

    def _setup(self, spec: StreamSpec) -> None:
        if self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be at least 1, got {self.n_neighbors}")
        self.index_ = faiss.IndexFlatL2(spec.n_features)
        self.labels_ = np.zeros(0, dtype=np.int64)

    def learn(self, X: np.ndarray, y: np.ndarray, task_id: int) -> None:
        self.index_.add(np.ascontiguousarray(X, dtype=np.float32))
        self.labels_ = np.concatenate([self.labels_, np.asarray(y, dtype=np.int64)])

    def decision_function(self, X: np.ndarray, allowed: list[int]) -> np.ndarray:
        scores = np.zeros((len(X), self.spec_.n_classes))
        candidates = np.isin(self.labels_, allowed)
        if not candidates.any():
            return scores
        params = None
        if not candidates.all():  # search only among examples of the allowed classes
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.flatnonzero(candidates).astype(np.int64)))
        k = min(self.n_neighbors, int(candidates.sum()))
        _, neighbours = self.index_.search(np.ascontiguousarray(X, dtype=np.float32), k, params=params)
        for rank in range(k):
            found = neighbours[:, rank] >= 0
            # one vote each, plus a bonus far below one vote that is larger for nearer neighbours:
            # equal vote counts go to the class whose neighbours rank nearer
            weight = 1.0 + 1e-3 * (k - rank) / k
            np.add.at(scores, (np.flatnonzero(found), self.labels_[neighbours[found, rank]]), weight)
        return scores

    def memory_bytes(self) -> int:
        return self.index_.ntotal * self.index_.d * 4 + self.labels_.nbytes
