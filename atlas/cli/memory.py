"""`atlas memory ...`: query and edit the learning memory like a small database."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from atlas.cli.common import console, err_console, print_json, state, write_json
from atlas.pamphlet_input import EDITABLE, parse_json, parse_plan, parse_tags
from memory.errors import MemoryStoreError

if TYPE_CHECKING:
    from memory.schema import Pamphlet


memory_app = typer.Typer(help="Query and edit the learning memory (pamphlets).", no_args_is_help=True)

STORE_HELP = "SQLite file or SQLAlchemy URL (default: $ATLAS_HOME/memory.sqlite)"
EMBEDDER_HELP = "minilm, hash[:DIM] or a sentence-transformers folder (default: the store's own)"

StoreOpt = typer.Option(None, "--store", "-s", help=STORE_HELP)
EmbedderOpt = typer.Option(None, "--embedder", help=EMBEDDER_HELP)
JsonOpt = typer.Option(False, "--json", help="machine-readable output")


def open_store(ctx: typer.Context, store: str | None, embedder: str | None = None, index: str | None = None, create: bool = True):
    from memory.store import MemoryStore

    settings = state(ctx).settings
    target = store or str(settings.home / "memory.sqlite")
    opened = MemoryStore.open(target, embedder=embedder, index_kind=index, index_dir=settings.home / "indexes", create=create)
    for notice in opened.notices:
        err_console.print(f"[yellow]note:[/] {escape(notice)}", highlight=False, soft_wrap=True)
    return opened


def _progress(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console)


def _brief(pamphlet: Pamphlet) -> dict[str, Any]:
    return pamphlet.model_dump(mode="json")


def _table(rows: list[Pamphlet], scores: list[float] | None = None, title: str = "") -> Table:
    table = Table(title=title or None)
    table.add_column("id", justify="right")
    if scores is not None:
        table.add_column("score", justify="right")
    for column in ("audience", "tags", "text"):
        table.add_column(column)
    table.add_column("v", justify="right")
    for n, p in enumerate(rows):
        text = p.text if len(p.text) <= 90 else p.text[:87] + "..."
        cells = [str(p.id)] + ([f"{scores[n]:.3f}"] if scores is not None else [])
        cells += [p.audience, escape(", ".join(p.tags)), escape(text) + (" [red](deleted)[/]" if p.deleted else ""), str(p.version)]
        table.add_row(*cells)
    return table


@memory_app.command("list")
def list_(
    ctx: typer.Context,
    store: str | None = StoreOpt,
    audience: str | None = typer.Option(None, "--audience", help="student or teacher"),
    tag: list[str] = typer.Option([], "--tag", "-t", help="only pamphlets with this tag (repeatable: all must match)"),
    deleted: bool = typer.Option(False, "--deleted", help="include soft-deleted pamphlets"),
    limit: int = typer.Option(50, "--limit", min=1),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = JsonOpt,
) -> None:
    """List pamphlets by id."""
    with open_store(ctx, store, create=False) as memory:
        rows = memory.list(audience=audience, tags=tag, include_deleted=deleted, limit=limit, offset=offset)
    if as_json:
        print_json([_brief(p) for p in rows])
    else:
        console.print(_table(rows, title=f"{len(rows)} pamphlet(s)"))


@memory_app.command()
def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="text to search for"),
    k: int = typer.Option(5, "-k", min=1, help="how many hits"),
    audience: str | None = typer.Option(None, "--audience"),
    tag: list[str] = typer.Option([], "--tag", "-t", help="required tag (repeatable)"),
    min_score: float | None = typer.Option(None, "--min-score", help="cosine similarity floor"),
    store: str | None = StoreOpt,
    embedder: str | None = EmbedderOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Semantic search; deleted pamphlets never appear."""
    with open_store(ctx, store, embedder, create=False) as memory:
        hits = memory.search(query, k=k, audience=audience, tags=tag, min_score=min_score)
    if as_json:
        print_json([{"score": h.score, **_brief(h.pamphlet)} for h in hits])
    else:
        console.print(_table([h.pamphlet for h in hits], [h.score for h in hits], title=f"{len(hits)} hit(s) for {query!r}"))


@memory_app.command()
def show(ctx: typer.Context, pamphlet_id: int = typer.Argument(...), store: str | None = StoreOpt, as_json: bool = JsonOpt) -> None:
    """One pamphlet in full, with its track record."""
    with open_store(ctx, store, create=False) as memory:
        pamphlet = memory.get(pamphlet_id)
        record = memory.track_record(pamphlet_id)
    if as_json:
        print_json({**_brief(pamphlet), "track_record": record.model_dump(mode="json")})
        return
    console.print(f"[bold]pamphlet {pamphlet.id}[/] v{pamphlet.version} ({pamphlet.audience})" + (" [red]deleted[/]" if pamphlet.deleted else ""))
    console.print(escape(pamphlet.text), highlight=False)
    for label, value in (
        ("tags", ", ".join(pamphlet.tags) or "-"),
        ("cue", pamphlet.cue or "-"),
        ("plan", json.dumps(pamphlet.plan) if pamphlet.plan else "-"),
        ("provenance", pamphlet.provenance.model_dump_json(exclude_defaults=True)),
        ("embedder", f"{pamphlet.embedding_model} ({pamphlet.embedding_dim} dims)"),
        ("created / updated", f"{pamphlet.created_at:%Y-%m-%d %H:%M} / {pamphlet.updated_at:%Y-%m-%d %H:%M}"),
        ("track record", f"{record.uses} uses, mean reward {record.mean_reward if record.mean_reward is not None else '-'}"),
    ):
        console.print(f"[dim]{label}:[/] {escape(value)}", highlight=False)


@memory_app.command()
def add(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="the guidance text"),
    audience: str = typer.Option("student", "--audience"),
    tag: list[str] = typer.Option([], "--tag", "-t"),
    cue: str = typer.Option("", "--cue", help="when this applies"),
    plan: str | None = typer.Option(None, "--plan", help="structured plan as JSON, or @file.json"),
    store: str | None = StoreOpt,
    embedder: str | None = EmbedderOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add one pamphlet (creates the store if needed)."""
    item = {"text": text, "audience": audience, "tags": tag, "cue": cue, "plan": _json_arg(plan, "--plan"), "provenance": {"source": "cli"}}
    with open_store(ctx, store, embedder) as memory:
        pamphlet = memory.add(item, changed_by="cli")
    print_json(_brief(pamphlet)) if as_json else console.print(f"added pamphlet {pamphlet.id}")


@memory_app.command()
def edit(
    ctx: typer.Context,
    pamphlet_id: int = typer.Argument(...),
    text: str | None = typer.Option(None, "--text", help="new text (re-embeds)"),
    set_: list[str] = typer.Option([], "--set", help="field=value for audience, cue, tags (comma-separated), plan (JSON)"),
    store: str | None = StoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Edit a pamphlet; with no --text/--set, opens $EDITOR on its editable fields (JSON)."""
    with open_store(ctx, store, create=False) as memory:
        current = memory.get(pamphlet_id)
        changes = _changes_from_flags(text, set_) if (text is not None or set_) else _changes_from_editor(current)
        updated = memory.update(pamphlet_id, changed_by="cli", **changes)
    if as_json:
        print_json(_brief(updated))
    elif updated.version == current.version:
        console.print(f"pamphlet {pamphlet_id}: nothing changed")
    else:
        console.print(f"pamphlet {pamphlet_id} is now version {updated.version}")


def _json_arg(value: str | None, flag: str) -> Any:
    if value is None:
        return None
    raw = Path(value[1:]).read_text() if value.startswith("@") else value
    return parse_json(raw, flag)


def _changes_from_flags(text: str | None, assignments: list[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {} if text is None else {"text": text}
    for assignment in assignments:
        field, sep, value = assignment.partition("=")
        field = field.strip()
        if not sep or field not in EDITABLE:
            raise MemoryStoreError(f"--set {assignment!r}: expected field=value with field one of {', '.join(EDITABLE)}")
        if field == "tags":
            changes["tags"] = parse_tags(value)
        elif field == "plan":
            changes["plan"] = parse_plan(Path(value[1:]).read_text() if value.startswith("@") else value, "--set plan")
        else:
            changes[field] = value
    return changes


def _changes_from_editor(current: Pamphlet) -> dict[str, Any]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise MemoryStoreError("no editor: set $EDITOR, or pass --text / --set field=value")
    fields = current.model_dump(mode="json", include=set(EDITABLE))
    with tempfile.NamedTemporaryFile("w", suffix=f"-pamphlet-{current.id}.json", delete=False) as handle:
        json.dump(fields, handle, indent=2)
        path = Path(handle.name)
    result = subprocess.run([*shlex.split(editor), str(path)])
    if result.returncode != 0:
        raise MemoryStoreError(f"editor exited with status {result.returncode}; nothing changed (your text is in {path})")
    try:
        edited = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MemoryStoreError(f"the edited file is not valid JSON ({exc.msg}, line {exc.lineno}); nothing changed; your edit is kept in {path}") from None
    if not isinstance(edited, dict) or set(edited) - set(EDITABLE):
        raise MemoryStoreError(f"the edited file must be an object with keys among {', '.join(EDITABLE)}; your edit is kept in {path}")
    path.unlink()
    return {k: v for k, v in edited.items() if v != fields.get(k)}


@memory_app.command("delete")
def delete_(ctx: typer.Context, ids: list[int] = typer.Argument(..., help="pamphlet ids"), store: str | None = StoreOpt) -> None:
    """Soft-delete pamphlets (they leave search at once; `purge` removes them for good)."""
    with open_store(ctx, store, create=False) as memory:
        for pamphlet_id in ids:
            memory.delete(pamphlet_id, changed_by="cli")
    console.print(f"deleted {len(ids)} pamphlet(s); `atlas memory restore ID` brings one back")


@memory_app.command()
def restore(ctx: typer.Context, ids: list[int] = typer.Argument(...), store: str | None = StoreOpt) -> None:
    """Undo a soft delete."""
    with open_store(ctx, store, create=False) as memory:
        for pamphlet_id in ids:
            memory.restore(pamphlet_id, changed_by="cli")
    console.print(f"restored {len(ids)} pamphlet(s)")


@memory_app.command()
def purge(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(None, help="soft-deleted ids to purge (default: all soft-deleted)"),
    yes: bool = typer.Option(False, "--yes", help="do not ask for confirmation"),
    store: str | None = StoreOpt,
) -> None:
    """Remove soft-deleted pamphlets for good, with their history and uses."""
    with open_store(ctx, store, create=False) as memory:
        if not yes:
            doomed = len(ids) if ids else memory.stats()["deleted"]
            typer.confirm(f"purge {doomed} soft-deleted pamphlet(s) for good?", abort=True)
        count = memory.purge(ids or None)
    console.print(f"purged {count} pamphlet(s)")


@memory_app.command()
def history(ctx: typer.Context, pamphlet_id: int = typer.Argument(...), store: str | None = StoreOpt, as_json: bool = JsonOpt) -> None:
    """Every version of a pamphlet: what changed, who changed it, when."""
    with open_store(ctx, store, create=False) as memory:
        versions = memory.history(pamphlet_id)
    if as_json:
        print_json([v.model_dump(mode="json") for v in versions])
        return
    table = Table(title=f"history of pamphlet {pamphlet_id}")
    for column in ("v", "change", "by", "when", "text"):
        table.add_column(column)
    for v in versions:
        table.add_row(str(v.version), v.change, escape(v.changed_by), f"{v.changed_at:%Y-%m-%d %H:%M:%S}", escape(str(v.snapshot.get("text", ""))[:80]))
    console.print(table)


@memory_app.command("export")
def export_(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="JSONL file to write"),
    include_deleted: bool = typer.Option(False, "--include-deleted"),
    store: str | None = StoreOpt,
) -> None:
    """Export pamphlets with history and uses to JSONL (lossless)."""
    with open_store(ctx, store, create=False) as memory:
        count = memory.export_jsonl(path, include_deleted=include_deleted)
    console.print(f"exported {count} pamphlet(s) to {escape(str(path))}")


@memory_app.command("import")
def import_(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="JSONL file (an export, or one pamphlet object per line)"),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="import the good lines and report the bad ones"),
    store: str | None = StoreOpt,
    embedder: str | None = EmbedderOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Import JSONL. Every line is validated first; a bad line means nothing is imported."""
    from memory.transfer import count_lines

    with open_store(ctx, store, embedder) as memory:
        total = count_lines(path)
        with _progress("importing") as progress:
            task = progress.add_task("import", total=total)
            report = memory.import_jsonl(path, skip_invalid=skip_invalid, changed_by="cli-import", progress=lambda n: progress.advance(task, n))
    summary = {"imported": report.imported, "duplicates": report.duplicates, "skipped_lines": report.skipped_lines, "renumbered": report.renumbered}
    if as_json:
        print_json(summary)
        return
    console.print(f"imported {report.imported}, skipped {report.duplicates} duplicate(s) and {len(report.skipped_lines)} bad line(s)")
    for line, problem in report.skipped_lines[:20]:
        err_console.print(f"  line {line}: {escape(str(problem))}", highlight=False)
    if report.renumbered:
        console.print(f"{len(report.renumbered)} id(s) were taken and got new ids: {report.renumbered}")


@memory_app.command()
def dedup(
    ctx: typer.Context,
    threshold: float = typer.Option(0.92, "--threshold", min=0.0, max=1.0, help="cosine similarity that counts as a duplicate"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the groups without merging"),
    store: str | None = StoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Merge near-duplicates into the oldest, keeping provenance, uses and history."""
    with open_store(ctx, store, create=False) as memory:
        groups = memory.dedup(threshold=threshold, dry_run=dry_run, changed_by="cli-dedup")
    if as_json:
        print_json([{"survivor": g.survivor, "merged": list(g.merged), "scores": list(g.scores)} for g in groups])
        return
    for g in groups:
        console.print(f"{g.survivor} <- {', '.join(f'{i} ({s:.3f})' for i, s in zip(g.merged, g.scores))}")
    verb = "would merge" if dry_run else "merged"
    console.print(f"{verb} {sum(len(g.merged) for g in groups)} pamphlet(s) into {len(groups)}")


@memory_app.command()
def stats(ctx: typer.Context, store: str | None = StoreOpt, as_json: bool = JsonOpt) -> None:
    """Counts, tags, uses, embedder and index."""
    with open_store(ctx, store, create=False) as memory:
        figures = memory.stats()
    if as_json:
        print_json(figures)
        return
    table = Table(title="memory")
    table.add_column("figure")
    table.add_column("value")
    for key, value in figures.items():
        table.add_row(key, escape(json.dumps(value) if isinstance(value, dict) else str(value)))
    console.print(table)


@memory_app.command()
def reindex(
    ctx: typer.Context,
    embedder: str | None = typer.Option(None, "--embedder", help="switch to this embedder (re-embeds everything)"),
    index: str | None = typer.Option(None, "--index", help="rebuild as auto (exact while small, hnsw from 20,000), flat, hnsw or ivf"),
    store: str | None = StoreOpt,
) -> None:
    """Switch the embedding model explicitly, or rebuild the index (optionally as another kind)."""
    with open_store(ctx, store, create=False) as memory:
        if embedder:
            figures = memory.stats()
            with _progress("re-embedding") as progress:
                task = progress.add_task("embed", total=figures["live"] + figures["deleted"])
                count = memory.reindex(embedder, progress=lambda n: progress.advance(task, n))
            console.print(f"re-embedded {count} pamphlet(s) with {memory.embedder.name}")
        if index or not embedder:
            count = memory.rebuild_index(index)
            console.print(f"rebuilt the {memory.stats()['index']['kind']} index of {count} pamphlet(s)")


@memory_app.command()
def bench(
    ctx: typer.Context,
    n: int = typer.Option(100_000, "--n", min=100, help="pamphlets to store (text mode: up to 1,000,000)"),
    out: Path = typer.Option(..., "--out", help="folder for results.json and the benchmark store"),
    index: str = typer.Option("auto", "--index", help="auto, flat, hnsw or ivf"),
    mode: str = typer.Option("text", "--mode", help="text (real MiniLM embeddings of IMDB sentences) or vectors (synthetic clusters)"),
    queries: int = typer.Option(1000, "--queries", min=10),
    seed: int = typer.Option(0, "--seed"),
    cache: Path | None = typer.Option(None, "--cache", help="where text embeddings are cached (default: $ATLAS_HOME/bench-embeddings)"),
) -> None:
    """Time the store at size N: add, filtered search against bare FAISS, cold open, recall, memory, text queries."""
    from memory.bench import MODES, run_bench

    if mode not in MODES:
        raise MemoryStoreError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    if index not in ("auto", "flat", "hnsw", "ivf"):
        raise MemoryStoreError(f"--index {index!r}: expected auto, flat, hnsw or ivf")
    cache = cache or state(ctx).settings.home / "bench-embeddings"
    label = "embedding (cached after the first run)" if mode == "text" else "adding"
    with _progress(label) as progress:
        task = progress.add_task("bench", total=n)
        results = run_bench(n, out, index, queries, seed, mode=mode, cache=cache, progress=lambda k: progress.advance(task, k))
    write_json(out / "results.json", results)
    table = Table(title=f"memory bench ({mode}): {n:,} pamphlets, {index} index ({results['index_kind']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("add_per_s", "search_p50_ms", "search_p99_ms", "faiss_p50_ms", "faiss_one_thread_p50_ms", "overhead_x", "open_s", "recall_at_10",
                "fresh_open_s", "rss_mb", "rss_private_mb", "rss_file_mb", "embed_search_p50_ms", "embed_p50_ms", "embed_torch_p50_ms"):
        table.add_row(key, f"{results[key]:,.3f}")
    table.add_row("query_backend", results["query_backend"])
    console.print(table)
    console.print(f"wrote {escape(str(out / 'results.json'))}")


@memory_app.command()
def mcp(
    ctx: typer.Context,
    store: str | None = StoreOpt,
    embedder: str | None = EmbedderOpt,
    transport: str = typer.Option("stdio", "--transport", help="stdio, or http (streamable HTTP at http://HOST:PORT/mcp)"),
    host: str | None = typer.Option(None, "--host", help="loopback address for http (default: mcp.host, 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="port for http (default: mcp.port, 8766)"),
) -> None:
    """Serve the memory over the Model Context Protocol: search, list, show, add, edit, delete, restore, history."""
    from atlas.integrations.mcp_server import require_loopback, serve

    if transport not in ("stdio", "http"):
        raise MemoryStoreError(f"--transport {transport!r}: expected stdio or http")
    settings = state(ctx).settings.mcp
    host = require_loopback(host or settings.host)  # checked before the store is opened
    with open_store(ctx, store, embedder) as memory:
        if transport == "http":
            err_console.print(f"serving {memory.target} over MCP at http://{host}:{port or settings.port}/mcp (Ctrl-C stops)", highlight=False)
        serve(memory, transport, host, port or settings.port)  # type: ignore[arg-type]
