"""Continual-learning metrics from the accuracy matrix R, where R[i][j] is the accuracy on task j's
test set after training on tasks 0..i (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018).

`baseline[j]` is the accuracy on task j of the learner before any training (its random
initialisation), the reference forward transfer is measured against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _matrix(R: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"the accuracy matrix must be square and non-empty (tasks x tasks), got shape {R.shape}")
    return R


def average_accuracy(R) -> float:
    """Mean accuracy over all tasks after training on the last one."""
    R = _matrix(R)
    return float(R[-1].mean())


def backward_transfer(R) -> float:
    """How training later tasks changed accuracy on earlier ones: mean of R[T-1][j] - R[j][j], j < T-1.
    Negative values mean forgetting; 0 for a single task."""
    R = _matrix(R)
    T = len(R)
    if T < 2:
        return 0.0
    return float(np.mean([R[-1, j] - R[j, j] for j in range(T - 1)]))


def forward_transfer(R, baseline) -> float:
    """How earlier tasks helped a task before it was trained: mean of R[j-1][j] - baseline[j], j >= 1."""
    R = _matrix(R)
    baseline = np.asarray(baseline, dtype=float)
    if baseline.shape != (len(R),):
        raise ValueError(f"the baseline needs one accuracy per task ({len(R)}), got shape {baseline.shape}")
    T = len(R)
    if T < 2:
        return 0.0
    return float(np.mean([R[j - 1, j] - baseline[j] for j in range(1, T)]))


def forgetting(R) -> float:
    """Mean over tasks j < T-1 of the best accuracy ever reached on j minus the final accuracy on j."""
    R = _matrix(R)
    T = len(R)
    if T < 2:
        return 0.0
    return float(np.mean([R[: T - 1, j].max() - R[-1, j] for j in range(T - 1)]))


def summarize(R, baseline) -> dict[str, float]:
    return {"acc": average_accuracy(R), "bwt": backward_transfer(R), "fwt": forward_transfer(R, baseline), "forgetting": forgetting(R)}


def mean_std(values: Sequence[float] | Sequence[np.ndarray]) -> tuple:
    """Mean and sample standard deviation (n - 1) over seeds, element-wise for matrices; 0 for one seed."""
    stacked = np.asarray(values, dtype=float)
    spread = stacked.std(axis=0, ddof=1) if len(stacked) > 1 else np.zeros_like(stacked[0])
    return stacked.mean(axis=0), spread
