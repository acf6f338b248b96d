"""`atlas ui`: the local web page for the memory and the run folders; `atlas ui bench` times it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from atlas.cli.common import console, err_console, state, write_json
from atlas.cli.memory import EmbedderOpt, StoreOpt, open_store
from atlas.errors import ConfigError

ui_app = typer.Typer(help="A local web page to browse and edit the memory and to read run folders.")


@ui_app.callback(invoke_without_command=True)
def ui(
    ctx: typer.Context,
    store: str | None = StoreOpt,
    embedder: str | None = EmbedderOpt,
    runs: Path | None = typer.Option(None, "--runs", help="folder searched for run folders (default: ui.runs, else $ATLAS_HOME)"),
    host: str | None = typer.Option(None, "--host", help="address to bind (default: ui.host, 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="port (default: ui.port, 8765)"),
    token: str | None = typer.Option(None, "--token", help="required off loopback (default: ui.token / $ATLAS_UI_TOKEN)"),
) -> None:
    """Serve the memory and the run folders at http://HOST:PORT/ until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    from atlas.ui.app import create_app, serve
    from atlas.ui.guard import Access

    settings = state(ctx).settings
    host = host or settings.ui.host
    port = port or settings.ui.port
    token = token or (settings.ui.token.get_secret_value() if settings.ui.token else None)
    Access(host=host, port=port, token=token, csrf="")  # refuses an open non-loopback bind before the store opens
    runs_root = runs or settings.ui.runs or settings.home
    if (runs or settings.ui.runs) and not runs_root.is_dir():
        raise ConfigError(f"runs folder {runs_root} does not exist: pass --runs with the folder your run commands write into")
    with open_store(ctx, store, embedder, create=False) as memory:
        app = create_app(memory, runs_root, host=host, port=port, token=token, page_size=settings.ui.page_size)
        shown = f"[{host}]" if ":" in host else host
        address = f"http://{shown}:{port}/" + ("?token=" + token if token else "")
        err_console.print(f"serving {memory.target} and the runs under {runs_root} at {address} (Ctrl-C stops)", highlight=False, markup=False)
        serve(app, host, port)


@ui_app.command("bench")
def bench(
    ctx: typer.Context,
    n: int = typer.Option(10_000, "--n", min=100, help="pamphlets in the benchmark store"),
    out: Path = typer.Option(..., "--out", help="folder for results.json and the benchmark store"),
    queries: int = typer.Option(50, "--queries", min=5, help="search requests to time"),
    repeats: int = typer.Option(5, "--repeats", min=1, help="times each list page is rendered"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Time the page server side at N pamphlets: the full list, the first page, and semantic search."""
    from atlas.ui.bench import run_bench

    results = run_bench(n, out, queries=queries, repeats=repeats, seed=seed)
    write_json(out / "results.json", results)
    table = Table(title=f"atlas ui bench: {n:,} pamphlets (server-side ms, {results['embedder']})")
    for column in ("request", "p50 ms", "max ms", "CPU p50 ms", "target"):
        table.add_column(column, justify="right" if column != "request" else "left")
    for name, figure in results["requests"].items():
        target = f"< {figure['target_ms']:,.0f}" if figure.get("target_ms") else "-"
        table.add_row(name, f"{figure['p50_ms']:,.1f}", f"{figure['max_ms']:,.1f}", f"{figure['cpu_p50_ms']:,.1f}", target)
    console.print(table)
    console.print(f"targets met: {results['targets_met']}; wrote {escape(str(out / 'results.json'))}")
