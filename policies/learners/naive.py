"""Naive fine-tuning: train on each task in turn with nothing against forgetting (the lower bound)."""

from __future__ import annotations

from policies.learners.network import NetworkLearner


class Naive(NetworkLearner):
    """Fine-tunes the MLP on every task in turn; what every continual method must beat."""
