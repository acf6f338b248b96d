"""`atlas llm chat` and `atlas llm bench`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from atlas.cli.common import console, print_json, state, write_json

llm_app = typer.Typer(help="Talk to and measure model backends.", no_args_is_help=True)

MODEL_HELP = "openai:<model>, local, local:<hf-folder>, or scripted:<reply>"


@llm_app.command()
def chat(
    ctx: typer.Context,
    prompt: str = typer.Argument(..., help="the user message"),
    model: str = typer.Option("local", "--model", "-m", help=MODEL_HELP),
    system: str | None = typer.Option(None, "--system", help="an optional system message"),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, max=2.0),
    seed: int | None = typer.Option(None, "--seed", help="sampling seed (default: the config's seed)"),
    cache: bool | None = typer.Option(None, "--cache/--no-cache", help="use the response cache (default: config)"),
    as_json: bool = typer.Option(False, "--json", help="print the completion and meter as JSON"),
) -> None:
    """One chat completion, metered: text, tokens, seconds and dollars."""
    from atlas.llm import make_llm

    settings = state(ctx).settings
    client = make_llm(model, settings, cache=cache)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    completion = client.chat(
        messages, max_tokens=max_tokens, temperature=temperature, seed=settings.seed if seed is None else seed
    )
    if as_json:
        print_json({
            "text": completion.text,
            "model": completion.model,
            "usage": {"prompt_tokens": completion.usage.prompt_tokens, "completion_tokens": completion.usage.completion_tokens},
            "latency_s": completion.latency_s,
            "cost_usd": completion.cost_usd,
            "cached": completion.cached,
            "finish_reason": completion.finish_reason,
        })
        return
    console.print(completion.text, highlight=False)
    console.print(
        f"[dim]{completion.model} | {completion.usage.prompt_tokens} in + {completion.usage.completion_tokens} out tokens"
        f" | {completion.latency_s:.2f}s | ${completion.cost_usd:.6f}{' | cached' if completion.cached else ''}[/]"
    )


@llm_app.command()
def bench(
    ctx: typer.Context,
    model: str = typer.Option("local", "--model", "-m", help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", help="folder for results.json"),
    n: int = typer.Option(200, "--n", min=1, help="IMDB reviews to score"),
    seed: int = typer.Option(0, "--seed", help="which reviews (seeded shuffle of IMDB)"),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="override local.batch_size"),
    gen_tokens: int = typer.Option(64, "--gen-tokens", min=1, help="tokens per generation prompt"),
) -> None:
    """Measure generation tokens/s and batched label scoring (items/s, accuracy) on IMDB reviews."""
    from atlas.llm import ZeroShotClassifier, make_llm
    from atlas.llm.bench import LabelledText, bench_generation, bench_label_scoring, machine_info
    from atlas.llm.classify import SENTIMENT_PROMPT
    from benchmarks.streams.movie_reviews import seeded_reviews

    settings = state(ctx).settings
    if batch_size is not None:
        settings = settings.model_copy(update={"local": settings.local.model_copy(update={"batch_size": batch_size})})
    began = time.perf_counter()
    client = make_llm(model, settings, cache=False)
    load_s = time.perf_counter() - began
    items = [LabelledText(r.text, r.label) for r in seeded_reviews("imdb", seed, n)]
    with console.status("timing generation"):
        generation = bench_generation(client, gen_tokens)
    columns = (TextColumn("scoring labels"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("score", total=len(items))
        scoring = bench_label_scoring(
            ZeroShotClassifier(client, SENTIMENT_PROMPT), items, progress=lambda k: progress.advance(task, k)
        )
    results: dict[str, Any] = {
        "model": client.model,
        "load_s": load_s,
        **generation,
        **scoring,
        "seed": seed,
        "batch_size": settings.local.batch_size,
        "dtype": settings.local.dtype,
        "quantize": settings.local.quantize,
        "prompt_max_words": SENTIMENT_PROMPT.max_words,
        "meter": client.meter.totals().to_dict(),
        "machine": machine_info(),
    }
    write_json(out / "results.json", results)
    table = Table(title=f"llm bench: {client.model}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("tokens_per_s", "items_per_s", "mean_prompt_tokens", "load_s"):
        table.add_row(key, f"{results[key]:.2f}")
    for mode, value in results["accuracy_by_calibration"].items():
        table.add_row(f"accuracy ({mode} calibration)", f"{value:.3f}")
    console.print(table)
    console.print(f"wrote {escape(str(out / 'results.json'))}")
