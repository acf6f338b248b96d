"""`atlas cascade serve`: the cascade as an OpenAI-compatible endpoint; `atlas cascade serve-bench` times it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from atlas.cli.common import console, err_console, state, write_json
from atlas.errors import ConfigError

if TYPE_CHECKING:  # the settings models load on first use, not for `atlas --help`
    from atlas.config import AtlasSettings

OPTION_OF = {"upstream_key": "--upstream-key", "served_name": "--served-name", "budget_floor": "--budget-floor", "save_every_s": "--save-every"}


def endpoint_config(**fields: Any):
    """The validated endpoint configuration; a bad option is a ConfigError naming the option."""
    from pydantic import ValidationError

    from atlas.endpoint.config import EndpointConfig

    try:
        return EndpointConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else ""
            option = OPTION_OF.get(name, "--" + name.replace("_", "-")) if name else "options"
            problems.append(f"{option}: {item['msg'].removeprefix('Value error, ')}")
        raise ConfigError("cannot start the cascade endpoint: " + "; ".join(problems)) from None


def _price(settings: AtlasSettings, model: str):
    from atlas.config import DEFAULT_PRICE_KEY

    price = settings.price_for(model)
    if price is None:
        err_console.print(f"note: no price listed for model {model!r}; dollars use prices.default (set prices.{model} in atlas.yaml)",
                          highlight=False, markup=False)
        price = settings.prices[DEFAULT_PRICE_KEY]
    return price


def serve_command(
    ctx: typer.Context,
    upstream: str | None = typer.Option(None, "--upstream", help="base URL of the upstream OpenAI-compatible API (default: openai.base_url / $OPENAI_BASE_URL)"),
    model: str = typer.Option(..., "--model", help="the upstream model name"),
    labels: str = typer.Option(..., "--labels", help="the label words, comma-separated, in class order (like negative,positive)"),
    prompt: str | None = typer.Option(None, "--prompt", help="upstream prompt with a {text} place (and optionally {labels}); default: forward the client's messages"),
    upstream_key: str | None = typer.Option(None, "--upstream-key", help="API key sent upstream (default: openai.api_key / $OPENAI_API_KEY)"),
    served_name: str = typer.Option("cascade", "--served-name", help="the model name clients ask for (the upstream's name works too)"),
    levels: str = typer.Option("hashed", "--levels", help="hashed or hashed,minilm"),
    policy: str = typer.Option("threshold", "--policy", help="threshold or ocl"),
    threshold: float = typer.Option(0.8, "--threshold", help="threshold policy: top probability a cheap level needs to answer"),
    mu: float = typer.Option(5.0, "--mu", help="ocl policy: weight of the expected cost of deferring"),
    warmup: int = typer.Option(50, "--warmup", min=0, help="upstream labels learned before a cheap level may answer"),
    budget: float = typer.Option(1.0, "--budget", help="largest share of requests that may go upstream (0..1)"),
    budget_floor: int = typer.Option(50, "--budget-floor", help="upstream calls always allowed before the share applies"),
    state_path: Path | None = typer.Option(None, "--state", help="state file (default: $ATLAS_HOME/cascade-serve/NAME.state)"),
    save_every: float | None = typer.Option(None, "--save-every", help="seconds between saves of the state (default: serve.save_every_s, 60)"),
    host: str | None = typer.Option(None, "--host", help="address to bind (default: serve.host, 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="port (default: serve.port, 8767)"),
    token: str | None = typer.Option(None, "--token", help="Bearer key clients must send; required off loopback (default: serve.token / $ATLAS_SERVE_TOKEN)"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Serve /v1/chat/completions: the cascade answers what it can, the upstream model the rest (and teaches the cascade)."""
    from atlas.endpoint.app import create_app, serve
    from atlas.endpoint.service import open_endpoint

    settings = state(ctx).settings
    base_url = upstream or settings.openai.base_url
    if not base_url:
        raise ConfigError("--upstream: give the upstream's base URL (like http://127.0.0.1:8000/v1), or set openai.base_url / $OPENAI_BASE_URL")
    key = upstream_key or (settings.openai.api_key.get_secret_value() if settings.openai.api_key else None)
    config = endpoint_config(
        upstream=base_url, model=model, upstream_key=key, labels=labels, prompt=prompt, served_name=served_name, levels=levels,
        policy=policy, threshold=threshold, mu=mu, warmup=warmup, budget=budget, budget_floor=budget_floor,
        state=state_path or settings.home / "cascade-serve" / f"{served_name}.state", save_every_s=save_every or settings.serve.save_every_s,
        host=host or settings.serve.host, port=port or settings.serve.port,
        token=token or (settings.serve.token.get_secret_value() if settings.serve.token else None), seed=seed,
    )
    endpoint = open_endpoint(config, _price(settings, model))
    restored = endpoint.totals.requests
    for notice in endpoint.notices:
        err_console.print(f"note: {notice}", highlight=False, markup=False)
    shown = f"[{config.host}]" if ":" in config.host else config.host
    err_console.print(
        f"serving the cascade ({', '.join(config.labels)}; {'restored after ' + format(restored, ',') + ' requests' if restored else 'new'}) "
        f"in front of {config.model} at {config.upstream} on http://{shown}:{config.port}/v1 as model {config.served_name!r}; "
        f"state {config.state} (Ctrl-C saves and stops)", highlight=False, markup=False)
    serve(create_app(endpoint), config.host, config.port)


def serve_bench_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="folder for results.json and the endpoint's state"),
    train: int = typer.Option(600, "--train", min=10, help="requests that teach the cascade first"),
    requests: int = typer.Option(400, "--requests", min=10, help="timed requests (each also sent straight to the upstream)"),
    upstream_latency_ms: float = typer.Option(20.0, "--upstream-latency-ms", min=0.0, help="the fake upstream's fixed latency"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Time the endpoint against the upstream-only path in one run: what it adds when a cheap level answers."""
    from benchmarks.cascade.serve_bench import run_serve_bench

    results = run_serve_bench(out, train=train, requests=requests, upstream_latency_s=upstream_latency_ms / 1e3, seed=seed)
    write_json(out / "results.json", results)
    table = Table(title=f"atlas cascade serve-bench: {requests} timed requests after {train} (fake upstream, {upstream_latency_ms:g} ms latency)")
    for column in ("path", "requests", "p50 ms", "p90 ms", "p99 ms", "server p50 ms"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, figure in results["paths"].items():
        server = f"{figure['server_p50_ms']:.2f}" if figure.get("server_p50_ms") is not None else "-"
        table.add_row(name, str(figure["n"]), f"{figure['p50_ms']:.2f}", f"{figure['p90_ms']:.2f}", f"{figure['p99_ms']:.2f}", server)
    console.print(table)
    for line in results["summary"]:
        console.print(line, highlight=False)
    console.print(f"target met: {results['target_met']}; wrote {out / 'results.json'}")
