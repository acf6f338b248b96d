"""The `atlas` command. This package is the composition root: it may wire in `benchmarks`."""
