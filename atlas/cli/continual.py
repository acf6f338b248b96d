"""`atlas cl ...`: weight-based and gradient-free continual learners on the same scenarios and metrics."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from atlas.cli.common import console, err_console, state

cl_app = typer.Typer(help="Continual-learning comparison: weight-based and gradient-free learners on identical streams.",
                     no_args_is_help=True)


@cl_app.command("run")
def run_command(
    ctx: typer.Context,
    scenario: str = typer.Option("split-digits", "--scenario", help="split-digits | permuted-digits | text-domains"),
    protocol: str | None = typer.Option(None, "--protocol", help="task-il | class-il | domain-il (default: the scenario's first)"),
    learners: str = typer.Option("all", "--learners", help="comma-separated: naive,ewc,si,lwf,replay,agem,ncm,knn,ridge,joint, or all"),
    seeds: int = typer.Option(3, "--seeds", help="run seeds 0..K-1; figures are mean ± std over them"),
    online: bool = typer.Option(False, "--online", help="single pass over each task in mini-batches of 10"),
    epochs: int = typer.Option(10, "--epochs", min=1, help="passes over each task (ignored with --online)"),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="default 32, or 10 with --online"),
    tasks: int | None = typer.Option(None, "--tasks", help="permuted-digits: number of permutations (default 5)"),
    per_domain: int | None = typer.Option(None, "--per-domain", help="text-domains: reviews per domain (default 1000)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for results.json, report.md, runs.jsonl and heat-maps"),
) -> None:
    """Train each learner task by task on every seed; write the accuracy matrices and their metrics."""
    from benchmarks.continual.comparison import ComparisonOptions, parse_learners, run_comparison, task_count

    options = ComparisonOptions(scenario=scenario, protocol=protocol, learners=parse_learners(learners), seeds=seeds,
                                online=online, epochs=epochs, batch_size=batch_size, tasks=tasks, per_domain=per_domain)
    cache_dir = state(ctx).settings.home / "cache" / "continual"
    total = len(options.learners) * options.seeds * task_count(options)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err_console) as bar:
        job = bar.add_task("tasks trained", total=total)

        def encoding(domain: str, n: int) -> None:
            bar.update(job, description=f"encoding {n} {domain} reviews (cached after the first run)")

        results = run_comparison(options, out, cache_dir, on_task=lambda: bar.update(job, advance=1, description="tasks trained"),
                                 on_encode=encoding)
    _print_table(results)
    console.print(f"wrote {escape(str(out))}/results.json, report.md, runs.jsonl, acc_matrices.png and one acc_matrix-NAME.png per learner")


def _print_table(results: dict) -> None:
    table = Table(title=f"{results['scenario']} ({results['protocol']}), seeds {results['seeds']}"
                        + (", online" if results["online"] else f", {results['epochs']} epochs"))
    for column in ("learner", "kind", "ACC %", "BWT", "FWT", "forget", "train s", "KiB"):
        table.add_column(column, justify="left" if column in ("learner", "kind") else "right")
    for name, entry in results["learners"].items():
        std = entry["std"]
        table.add_row(name, entry["kind"], f"{entry['acc'] * 100:.1f}±{std['acc'] * 100:.1f}",
                      f"{entry['bwt'] * 100:+.1f}", "n/a" if entry["fwt"] is None else f"{entry['fwt'] * 100:+.1f}", f"{entry['forgetting'] * 100:.1f}",
                      f"{entry['time_s']:.2f}", f"{entry['memory_bytes'] / 1024:,.0f}")
    console.print(table)
