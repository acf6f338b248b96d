"""`atlas cascade ...`: stream inference with an online cascade, and recorded LLM answers."""

from __future__ import annotations

import json
import time
from pathlib import Path


import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from atlas.cli.common import console, err_console, state
from atlas.errors import AtlasError

cascade_app = typer.Typer(help="Cost-bounded stream inference: online cascades that learn to imitate an LLM.", no_args_is_help=True)


TASK_HELP = "the task: a built-in name (sentiment, text-sources) or a YAML/JSON task file (default: the stream's own)"


def _task(task: str | None, stream: str, labels: str | None, prompt: str | None, label_words: str | None, headline: str | None):
    """The run's task from --task and the flags that override it (validated; errors exit 2)."""
    from benchmarks.streams.tasks import parse_words, resolve_task

    names = [x.strip() for x in labels.split(",") if x.strip()] if labels is not None else None
    if labels is not None and not names:
        raise typer.BadParameter("give the labels as a comma-separated list, e.g. --labels democrat,republican", param_hint="--labels")
    return resolve_task(task, stream, names, prompt, parse_words(label_words) if label_words else None, headline)


@cascade_app.command()
def annotate(
    ctx: typer.Context,
    stream: str = typer.Option("imdb", "--stream", help="imdb, rotten_tomatoes, imdb-then-rt, imdb-by-length, text-sources, or a .csv/.jsonl file"),
    limit: int = typer.Option(5000, "--limit", min=1, help="first N items of the (seeded) stream"),
    llm: str = typer.Option("local", "--llm", help="local, openai:MODEL, ..."),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file of recorded answers"),
    seed: int = typer.Option(0, "--seed"),
    batch: int = typer.Option(16, "--batch", min=1, help="items per model call batch"),
    resume: bool = typer.Option(False, "--resume", help="continue a file cut short"),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    labels: str | None = typer.Option(None, "--labels", help="class names, comma-separated (a task without a file)"),
    prompt: str | None = typer.Option(None, "--prompt", help="prompt template with {text} (and optionally {labels})"),
    label_words: str | None = typer.Option(None, "--label-words", help="label=word|other,... : the words the LLM answers with"),
) -> None:
    """Record the LLM level's answers on a stream (id, label name, class probabilities, model) for replay."""
    from atlas.llm import Meter, make_llm
    from atlas.llm.answerers import LiveAnswerer
    from atlas.llm.classify import LabelPrompt, ZeroShotClassifier, can_score_exactly
    from atlas.llm.recorded import header, read_records, record
    from benchmarks.streams.items import load_stream

    settings = state(ctx).settings
    the_task = _task(task, stream, labels, prompt, label_words, None)
    items = load_stream(stream, limit, seed, the_task.labels).items
    done: list[dict] = []
    head = None
    if out.exists():
        if not resume:
            raise AtlasError(f"{out} exists; pass --resume to continue it or choose another --out")
        head, done = read_records(out)
        if head is None and done:
            raise AtlasError(f"{out} was recorded before recorded answers named their task (no header line); record to a new file")
        if head is not None and [str(x).lower() for x in head.get("labels") or []] != [x.lower() for x in the_task.labels]:
            raise AtlasError(f"{out} was recorded for the labels {', '.join(map(str, head.get('labels') or []))}, not this task's ({', '.join(the_task.labels)}); it cannot be resumed")
        expected = [i.id for i in items[: len(done)]]
        if [str(d.get("id")) for d in done] != expected:
            raise AtlasError(f"{out} was recorded on another stream, seed or order; it cannot be resumed with these options")
    meter = Meter()
    client = make_llm(llm, settings, meter=meter)
    import numpy as np

    label_prompt = LabelPrompt.from_task(the_task)
    # the same answers as the live level: label words scored where the choice is exact, else chat answers parsed
    scoring = can_score_exactly(client, label_prompt.class_words())
    classifier = ZeroShotClassifier(client, label_prompt)
    chat = None if scoring else LiveAnswerer(client, label_prompt)
    if done and scoring:  # batch calibration is a running mean over the stream so far: restore it
        raw_done = np.array([d["raw"] for d in done])
        classifier.label_sum_, classifier.n_seen_ = raw_done.sum(axis=0), len(done)
    started = time.perf_counter()
    todo = items[len(done):]
    with out.open("a", encoding="utf-8") as sink, Progress(TextColumn("annotating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=err_console) as bar:
        if head is None:
            sink.write(json.dumps(header(the_task.name, the_task.labels, client.model, stream, seed)) + "\n")
        progress = bar.add_task("annotate", total=len(items), completed=len(done))
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            if chat is None:
                raw = classifier.raw_proba([i.text for i in chunk])
                probs = classifier.calibrate(raw)
                chosen: list[int | None] = [int(np.argmax(p)) for p in probs]
            else:  # an answer that names no label is recorded as null (counted as unparsed on replay)
                answers = chat([i.id for i in chunk], [i.text for i in chunk])
                raw = probs = answers.probs
                chosen = answers.labels
            for item, y, r, p in zip(chunk, chosen, raw, probs):
                sink.write(json.dumps(record(item.id, item.text, the_task.labels, y, p, r, client.model)) + "\n")
            sink.flush()
            bar.update(progress, advance=len(chunk))
    seconds = time.perf_counter() - started
    totals = meter.totals()
    console.print(f"recorded {len(todo)} answers ({len(items)} in {escape(str(out))}) in {seconds:.0f} s: {len(todo) / max(seconds, 1e-9):.2f} items/s, {totals.prompt_tokens:,} prompt tokens, ${totals.cost_usd:.4f}")


def _options(stream: str, limit: int | None, llm: str | None, policy: str, mu: float, budget: float | None, budget_window: int | None,
             threshold: float, levels: str, seed: int, batch: int, task=None, unlabelled: str = "auto"):
    import math

    from benchmarks.cascade.run import LEVEL_SETS, POLICIES, CascadeOptions, default_llm

    if not math.isfinite(mu) or mu < 0:
        raise typer.BadParameter(f"mu weighs the cost of deferring and must be a number >= 0, got {mu:g}", param_hint="--mu")
    if not 0.0 <= threshold <= 1.0:
        raise typer.BadParameter(f"threshold is the top class probability a level needs to answer, a number in [0, 1], got {threshold:g}", param_hint="--threshold")

    if policy not in POLICIES:
        raise typer.BadParameter(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}", param_hint="--policy")
    if levels not in LEVEL_SETS:
        raise typer.BadParameter(f"unknown levels {levels!r}; choose one of {', '.join(LEVEL_SETS)}", param_hint="--levels")
    if budget is not None and not 0.0 <= budget <= 1.0:
        raise typer.BadParameter(f"budget must be a fraction in [0, 1], got {budget}", param_hint="--budget")
    from benchmarks.streams.items import UNLABELLED_WORDS

    if unlabelled not in UNLABELLED_WORDS and not Path(unlabelled).is_file():
        raise typer.BadParameter(f"{unlabelled!r} is neither auto, none nor a file: give a .csv/.jsonl file with a text column", param_hint="--unlabelled")
    return CascadeOptions(stream=stream, limit=limit, llm=llm or default_llm(stream), policy=policy, mu=mu, budget=budget,
                          budget_window=budget_window, threshold=threshold, levels=levels, seed=seed, batch_size=batch, task=task,
                          unlabelled=unlabelled)


STREAM_HELP = "imdb, rotten_tomatoes, imdb-then-rt, imdb-by-length, text-sources, or a .csv/.jsonl file with text (and label)"
LLM_HELP = ("annotations:NAME|FILE[,FILE] (recorded answers; shipped: imdb-gpt-3.5, imdb-local-5000.jsonl, rt-local-2000.jsonl), "
            "local, or openai:MODEL; default: GPT-3.5's answers for IMDB streams, the local model's otherwise")
LEVELS_HELP = "cheap levels below the LLM: nb (default), hashed, nb,minilm or hashed,minilm"
UNLABELLED_HELP = ("text from outside the stream that the topics learn from, without labels: auto (a built-in review stream: the "
                   "reviews of its sources it does not hold), none (the stream's answered texts only), or a .csv/.jsonl file with a "
                   "text column (labels never read; texts that are also stream items are dropped)")
MU_HELP = "ocl: price of one deferral in expected errors (0 = send all to the LLM; about 0.5 and up: warm-up and exploration only)"


@cascade_app.command("run")
def run_command(
    ctx: typer.Context,
    stream: str = typer.Option("imdb", "--stream", help=STREAM_HELP),
    limit: int | None = typer.Option(12500, "--limit", min=1),
    llm: str | None = typer.Option(None, "--llm", help=LLM_HELP),
    policy: str = typer.Option("ocl", "--policy", help="ocl | threshold | budget"),
    mu: float = typer.Option(0.2, "--mu", help=MU_HELP),
    budget: float | None = typer.Option(0.1, "--budget", help="budget: the largest share of items sent to the LLM"),
    budget_window: int | None = typer.Option(None, "--budget-window", min=1, help="budget: enforce the share in every window of this many items instead"),
    threshold: float = typer.Option(0.7, "--threshold", help="threshold: top probability a level needs to answer"),
    levels: str = typer.Option("nb", "--levels", help=LEVELS_HELP),
    seed: int = typer.Option(0, "--seed"),
    batch: int = typer.Option(32, "--batch", min=1, help="items answered before the levels learn from them"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for results.json, items.jsonl and plots"),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    labels: str | None = typer.Option(None, "--labels", help="class names, comma-separated (a task without a file)"),
    prompt: str | None = typer.Option(None, "--prompt", help="prompt template with {text} (and optionally {labels})"),
    label_words: str | None = typer.Option(None, "--label-words", help="label=word|other,... : the words the LLM answers with"),
    headline: str | None = typer.Option(None, "--headline", help="the class whose recall is the headline figure (a rare class)"),
    covered_only: bool = typer.Option(False, "--covered-only", help="recorded answers of part of a source: run on the items they cover "
                                      "(in the seed's order, up to --limit)"),
    unlabelled: str = typer.Option("auto", "--unlabelled", help=UNLABELLED_HELP),
) -> None:
    """Answer a stream with an online cascade; write results.json, per-item JSONL and plots."""
    from benchmarks.cascade.run import run_cascade

    options = _options(stream, limit, llm, policy, mu, budget, budget_window, threshold, levels, seed, batch,
                       _task(task, stream, labels, prompt, label_words, headline), unlabelled)
    options.covered_only = covered_only
    with Progress(TextColumn("cascade"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console) as bar:
        bar_id = bar.add_task("cascade", total=limit)
        results = run_cascade(options, state(ctx).settings, out, progress=lambda done: bar.update(bar_id, completed=done))
    shown: tuple[str, ...] = ("n", "accuracy", "macro_f1", "llm_accuracy", "llm_macro_f1", "agreement_with_llm", "llm_fraction", "cost",
                              "cost_llm_only", "items_per_s_non_llm", "items_per_s_answer_only", "level_shares")
    if results.get("headline_class"):
        shown += ("headline_class", "headline_recall", "llm_headline_recall")
    for key in shown:
        value = results[key]
        console.print(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}", highlight=False)
    console.print(f"wrote {escape(str(out))}/results.json, items.jsonl, llm_rate.png, level_shares.png")


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"{option} must be comma-separated numbers, got {text!r}", param_hint=option) from None


@cascade_app.command()
def bench(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="folder for results.json, report.md and frontier.png"),
    seed: int = typer.Option(0, "--seed"),
    levels: str = typer.Option("nb", "--levels", help=LEVELS_HELP),
    stream: str | None = typer.Option(None, "--stream", help="run one stream instead of the default plan (IMDB 12,500 with GPT-3.5, "
                                      "imdb-by-length, IMDB 5,000 with the local model)"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="with --stream: first N items"),
    llm: str | None = typer.Option(None, "--llm", help=f"with --stream: {LLM_HELP}"),
    mu: str = typer.Option("0.05,0.2,0.3,0.4", "--mu", help="with --stream: ocl mu values"),
    thresholds: str = typer.Option("0.6,0.7,0.9", "--thresholds", help="with --stream: threshold values"),
    budgets: str = typer.Option("0.1,0.2,0.3,0.4", "--budgets", help="with --stream: budget shares"),
    refine: int = typer.Option(6, "--refine", min=0, help="per stream, up to N more ocl points toward each share cap "
                               "(10/20/30/40%) whose nearest point under it lies more than a point below it, caps that miss "
                               "their target first: the midpoint of neighbouring mu values whose shares lie either side of "
                               "the cap (0: the grid only)"),
    unlabelled: str = typer.Option("auto", "--unlabelled", help=f"with --stream: {UNLABELLED_HELP}"),
) -> None:
    """Each policy's accuracy / LLM-share frontier, the OCL paper's points on the same plot, targets met or not."""
    from benchmarks.cascade.bench import default_plan, one_case, run_bench
    from benchmarks.cascade.run import default_llm

    for value, option, low, high in [(v, "--mu", 0.0, float("inf")) for v in _floats(mu, "--mu")] + \
            [(v, "--thresholds", 0.0, 1.0) for v in _floats(thresholds, "--thresholds")] + [(v, "--budgets", 0.0, 1.0) for v in _floats(budgets, "--budgets")]:
        if not low <= value <= high:
            raise typer.BadParameter(f"{value:g} is out of range [{low:g}, {high:g}]", param_hint=option)
    _options(stream or "imdb", limit, llm, "ocl", 0.1, 0.1, None, 0.7, levels, seed, 32, unlabelled=unlabelled)  # validates levels, --unlabelled
    if stream is None and unlabelled != "auto":
        raise typer.BadParameter("goes with --stream: the default plan already runs IMDB both with the reviews outside the stream (auto) "
                                 "and without them (none)", param_hint="--unlabelled")
    if stream is None:
        plan = default_plan()
    else:
        knobs = {"ocl": _floats(mu, "--mu"), "threshold": _floats(thresholds, "--thresholds"), "budget": _floats(budgets, "--budgets")}
        plan = one_case(stream, limit, llm or default_llm(stream), {k: v for k, v in knobs.items() if v}, unlabelled)
    results = run_bench(plan, state(ctx).settings, out, seed=seed, levels=levels, report=lambda line: console.print(line, highlight=False), refine=refine)
    for row in results["targets"]:
        best = row["best"]
        console.print(f"LLM share <= {row['cap']:.0%}: target {row['target']:.3f}, best {'none' if best is None else format(best['accuracy'], '.4f')}"
                      f" -> {'met' if row['met'] else 'missed'}", highlight=False)
    console.print(f"wrote {out}/results.json, report.md, frontier.png in {results['seconds']:.0f} s")


@cascade_app.command()
def sweep(
    ctx: typer.Context,
    mu: str = typer.Option("0.05,0.2,0.3,0.4", "--mu", help="comma-separated mu values (ocl)"),
    stream: str = typer.Option("imdb", "--stream", help=STREAM_HELP),
    limit: int | None = typer.Option(12500, "--limit", min=1),
    llm: str | None = typer.Option(None, "--llm", help=LLM_HELP),
    levels: str = typer.Option("nb", "--levels", help=LEVELS_HELP),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", "-o"),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    labels: str | None = typer.Option(None, "--labels", help="class names, comma-separated (a task without a file)"),
    headline: str | None = typer.Option(None, "--headline", help="the class whose recall is the headline figure"),
    unlabelled: str = typer.Option("auto", "--unlabelled", help=UNLABELLED_HELP),
) -> None:
    """The accuracy-cost frontier of the ocl policy over mu, with its plot; marks where it matches LLM-only accuracy."""
    from benchmarks.cascade.run import run_cascade

    the_task = _task(task, stream, labels, None, None, headline)
    values = _floats(mu, "--mu")
    points = []
    for value in values:
        options = _options(stream, limit, llm, "ocl", value, None, None, 0.7, levels, seed, 32, the_task, unlabelled)
        result = run_cascade(options, state(ctx).settings, out / f"mu-{value:g}")
        points.append({"mu": value, "accuracy": result["accuracy"], "macro_f1": result["macro_f1"], "llm_fraction": result["llm_fraction"], "cost": result["cost"],
                       "cost_llm_only": result["cost_llm_only"], "llm_accuracy": result["llm_accuracy"], "llm_macro_f1": result["llm_macro_f1"],
                       "headline_recall": result["headline_recall"]})
        console.print(f"mu {value:g}: accuracy {result['accuracy']:.4f}, LLM share {result['llm_fraction']:.3f}", highlight=False)
    llm_accuracy = points[0]["llm_accuracy"] if points else None
    matching = [p for p in points if llm_accuracy is not None and p["accuracy"] is not None and p["accuracy"] >= llm_accuracy - 0.01]
    cheapest = min(matching, key=lambda p: p["cost"]) if matching else None
    frontier = {"points": points, "llm_accuracy": llm_accuracy, "matches_llm_within_1pt": cheapest}
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontier.json").write_text(json.dumps(frontier, indent=2) + "\n", encoding="utf-8")
    _plot_frontier(points, llm_accuracy, cheapest, out / "frontier.png")
    console.print(f"wrote {escape(str(out))}/frontier.json and frontier.png" + ("" if cheapest else "; no mu reaches LLM-only accuracy within 1 point"))


def _plot_frontier(points, llm_accuracy, cheapest, path: Path) -> None:
    from matplotlib.figure import Figure  # the object API: no pyplot state, the caller's backend untouched

    fig = Figure(figsize=(6, 4))
    axis = fig.subplots()
    axis.plot([p["cost"] / p["cost_llm_only"] for p in points], [p["accuracy"] for p in points], "o-", label="cascade (ocl)")
    for p in points:
        axis.annotate(f"mu={p['mu']:g}", (p["cost"] / p["cost_llm_only"], p["accuracy"]), fontsize=7)
    if points and all(p.get("macro_f1") is not None for p in points):  # K classes: macro-F1 beside accuracy
        axis.plot([p["cost"] / p["cost_llm_only"] for p in points], [p["macro_f1"] for p in points], "s:", label="cascade macro-F1")
        if points[0].get("llm_macro_f1") is not None:
            axis.axhline(points[0]["llm_macro_f1"], color="grey", linestyle=":", label="LLM only, macro-F1")
    if llm_accuracy is not None:
        axis.axhline(llm_accuracy, color="grey", linestyle="--", label="LLM only")
    if cheapest:
        axis.plot([cheapest["cost"] / cheapest["cost_llm_only"]], [cheapest["accuracy"]], "r*", markersize=14, label="matches LLM (within 1 pt)")
    axis.set_xlabel("cost relative to LLM only")
    axis.set_ylabel("accuracy / macro-F1")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
