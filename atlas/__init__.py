"""Gradient-free continual learning for LLM agents."""

__version__ = "0.1.0"
