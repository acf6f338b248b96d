"""Benchmarks: investigation worlds, text streams and continual-learning scenarios."""
