"""Entry point: `atlas --version`, `atlas doctor`, and the command groups."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from atlas import __version__
from atlas.cli.bench import bench_app
from atlas.cli.cascade import cascade_app
from atlas.cli.cascade_serve import serve_bench_command, serve_command
from atlas.cli.continual import cl_app
from atlas.cli.common import CliState, console, err_console, print_json, state
from atlas.cli.llm import llm_app
from atlas.cli.memory import memory_app
from atlas.cli.run import bench_atlas_command, bench_local_agent_command, bench_scale_command, bench_standin_command, demo_command, run_command
from atlas.cli.ui import ui_app
from atlas.errors import AtlasError, user_message
from memory.errors import MemoryStoreError

app = typer.Typer(
    name="atlas",
    help="Gradient-free continual learning for LLM agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(llm_app, name="llm")
app.add_typer(memory_app, name="memory")
app.add_typer(bench_app, name="bench")
app.add_typer(cascade_app, name="cascade")
app.add_typer(cl_app, name="cl")
app.add_typer(ui_app, name="ui")
app.command("run")(run_command)
app.command("demo")(demo_command)
bench_app.command("atlas")(bench_atlas_command)
bench_app.command("standin")(bench_standin_command)
bench_app.command("local-agent")(bench_local_agent_command)
cascade_app.command("serve")(serve_command)
cascade_app.command("serve-bench")(serve_bench_command)
bench_app.command("scale")(bench_scale_command)

STATUS_STYLE = {"ok": "[green]ok[/]", "fail": "[red]FAIL[/]", "skip": "[yellow]skip[/]"}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"atlas {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="settings file (default: ./atlas.yaml or $ATLAS_CONFIG)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress details"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(config)


@app.command()
def doctor(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="print results as JSON"),
    skip_llm: bool = typer.Option(False, "--skip-llm", help="do not load the local LLM"),
) -> None:
    """Check the install: torch build, offline embedder, local LLM, $ATLAS_HOME, OpenAI endpoint."""
    from atlas.doctor import CHECKS, run_checks

    settings = state(ctx).settings
    names = [n for n in CHECKS if not (skip_llm and n == "local_llm")]
    results = run_checks(settings, names)
    failed = [r for r in results if r.status == "fail"]
    if as_json:
        print_json({"ok": not failed, "version": __version__, "checks": [r.to_dict() for r in results]})
    else:
        table = Table(title=f"atlas {__version__} doctor", show_lines=False)
        for column in ("check", "status", "detail", "seconds"):
            table.add_column(column)
        for r in results:
            detail = r.detail + (f"\n[dim]fix: {r.hint}[/]" if r.status == "fail" and r.hint else "")
            table.add_row(r.name, STATUS_STYLE[r.status], detail, f"{r.seconds:.1f}")
        console.print(table)
        console.print("[red]some checks failed[/]" if failed else "[green]all checks passed[/]")
    if failed:
        raise typer.Exit(1)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: offline by default; user errors print cleanly and exit 2."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(variable, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv)
    except Exception as exc:
        from pydantic import ValidationError  # here, not at the top: `atlas --help` never builds pydantic

        if not isinstance(exc, (AtlasError, MemoryStoreError, ValidationError)):
            raise
        err_console.print(f"[red]error:[/] {escape(user_message(exc) or str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
