"""`python -m atlas`: the same entry point as the `atlas` command."""

from atlas.cli.main import run

run()
