"""What every command shares: settings from the global options, consoles, JSON output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:  # settings load on first use, so `atlas --help` does not build the settings models
    from atlas.config import AtlasSettings

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliState:
    config_file: Path | None = None
    _settings: AtlasSettings | None = field(default=None, init=False)

    @property
    def settings(self) -> AtlasSettings:
        if self._settings is None:
            from atlas.config import load_settings

            self._settings = load_settings(self.config_file)
        return self._settings


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    typer.echo(json.dumps(data, indent=2, default=str))


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
