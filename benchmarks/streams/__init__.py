"""Text streams for cascades and continual learning."""
