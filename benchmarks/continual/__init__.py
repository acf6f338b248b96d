"""Continual-learning scenarios, metrics, evaluation and reports (see `atlas cl run`)."""
