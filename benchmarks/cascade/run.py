"""Compose a cascade run: stream, levels, LLM answerer, policy; then figures, per-item JSONL and plots."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.config import AtlasSettings
from atlas.errors import AtlasError
from atlas.llm.answerers import AnnotationAnswerer, LiveAnswerer
from benchmarks.streams.items import unlabelled_texts
from policies.cascade.cascade import OnlineCascade
from policies.cascade.deferral import BudgetPolicy, OCLPolicy, ThresholdPolicy
from policies.cascade.drift import DisagreementDrift
from policies.cascade.embedding import EmbeddingLevel
from policies.cascade.hashed_text import HashedTextLevel
from policies.cascade.llm_level import LLMLevel
from policies.cascade.metrics import phase_figures, summarize
from policies.cascade.nb_text import NBTextLevel
from policies.cascade.task import Task

POLICIES = ("ocl", "threshold", "budget")
LEVEL_SETS = ("nb", "hashed", "nb,minilm", "hashed,minilm")
LEVEL_COSTS = {"nb_lr": 1.0, "hashed_lr": 1.0, "minilm_lr": 5.0, "llm": 100.0}
GPT35_IMDB = "annotations:imdb-gpt-3.5"  # gpt-3.5-turbo-1106 on all 25,000 IMDB reviews (Nie et al. 2024)
LOCAL_ANSWERS = {"imdb": "annotations:imdb-local-5000.jsonl", "rotten_tomatoes": "annotations:rt-local-2000.jsonl",
                 "imdb-then-rt": "annotations:imdb-local-5000.jsonl,rt-local-2000.jsonl"}


def default_llm(stream: str) -> str:
    """The recorded answers a built-in stream replays by default: GPT-3.5's for IMDB, else the local model's."""
    if stream in ("imdb", "imdb-by-length"):
        return GPT35_IMDB
    return LOCAL_ANSWERS.get(stream, GPT35_IMDB)


@dataclass
class CascadeOptions:
    stream: str = "imdb"
    limit: int | None = 5000
    llm: str = GPT35_IMDB
    policy: str = "ocl"
    mu: float = 0.1
    budget: float | None = 0.1
    budget_window: int | None = None
    threshold: float = 0.7
    levels: str = "nb"
    seed: int = 0
    batch_size: int = 32
    task: Any = None  # a policies.cascade.task.Task; None: the stream's own task
    covered_only: bool = False  # recorded answers: the stream's items they cover, in the seed's order, up to `limit`
    unlabelled: str = "auto"  # text from outside the stream for the topics: auto, none, or a CSV/JSONL file (labels unread)


def annotation_path(name: str) -> Path:
    """A file path as given, or the name of a file shipped in benchmarks/streams/annotations/."""
    path = Path(name)
    if path.is_file():
        return path
    import benchmarks.streams

    folder = Path(benchmarks.streams.__file__).parent / "annotations"
    for shipped in (folder / path.name, folder / f"{path.name}.jsonl"):
        if shipped.is_file():
            return shipped
    return path


def build_answerer(spec: str, settings: AtlasSettings, task: Task):
    """`annotations:FILE` replays recorded answers (checked against the task's labels); anything
    else is a model spec for a live level prompted with the task."""
    if spec.startswith("annotations:"):
        return AnnotationAnswerer([annotation_path(name) for name in spec.split(":", 1)[1].split(",")], task.labels), None
    from atlas.llm import make_llm
    from atlas.llm.classify import LabelPrompt

    client = make_llm(spec, settings)
    return LiveAnswerer(client, LabelPrompt.from_task(task), batch_size=settings.local.batch_size), client


def build_policy(options: CascadeOptions, costs: list[float]):
    levels = len(costs) - 1
    if options.policy == "ocl":
        return OCLPolicy(levels, costs, mu=options.mu, seed=options.seed)
    if options.policy == "threshold":
        return ThresholdPolicy(options.threshold)
    if options.policy == "budget":
        return BudgetPolicy(fraction=None if options.budget_window else options.budget, per_window=options.budget_window and round((options.budget or 0) * options.budget_window),
                            window=options.budget_window or 100, levels=levels, threshold=options.threshold)
    raise AtlasError(f"unknown policy {options.policy!r}; choose one of {', '.join(POLICIES)}")


class MiniLMEncoder:
    """Sentence vectors of a review's first 96 words; the model loads on first use and is not pickled."""

    def __init__(self, words: int = 96) -> None:
        self.words = words
        self._model: Any = None

    def __call__(self, texts) -> Any:
        if self._model is None:
            from memory.embed import make_embedder

            self._model = make_embedder("minilm")
        return self._model.encode([" ".join(t.split()[: self.words]) for t in texts])

    def __getstate__(self) -> dict[str, Any]:
        return {"words": self.words, "_model": None}


def answer_speed(levels: list[Any], texts: list[str], sample: int = 2000) -> float:
    """Items per second the learned cheap levels answer at (every level asked, nothing learned)."""
    chunk = texts[-sample:]
    clock = time.perf_counter()
    for first in range(0, len(chunk), 32):
        for level in levels:
            level.predict_proba(chunk[first:first + 32])
    return len(chunk) / max(time.perf_counter() - clock, 1e-9)


def build_levels(spec: str, classes: int, seed: int) -> list[Any]:
    """The cheap levels, cheapest first: `nb` (default), `hashed`, optionally followed by `minilm`."""
    if spec not in LEVEL_SETS:
        raise AtlasError(f"unknown levels {spec!r}; choose one of {', '.join(LEVEL_SETS)}")
    names = spec.split(",")
    levels: list[Any] = []
    if names[0] == "nb":
        levels.append(NBTextLevel(classes=classes, cost=LEVEL_COSTS["nb_lr"], seed=seed))
    else:
        levels.append(HashedTextLevel(classes=classes, cost=LEVEL_COSTS["hashed_lr"], seed=seed))
    if "minilm" in names:
        levels.append(EmbeddingLevel(MiniLMEncoder(), classes=classes, cost=LEVEL_COSTS["minilm_lr"], seed=seed))
    return levels


def open_stream(options: CascadeOptions, settings: AtlasSettings) -> tuple[Any, Any, Any, Any]:
    """The task, the stream, its answerer and the live client (None for recorded answers); recorded answers
    that do not cover the stream (or, with `covered_only`, cover none of it) stop here, before anything runs."""
    from benchmarks.streams.items import Stream, load_stream
    from benchmarks.streams.tasks import resolve_task

    if options.covered_only and not options.llm.startswith("annotations:"):
        raise AtlasError(f"--covered-only keeps the items that recorded answers cover; {options.llm!r} is a live model: "
                         "give --llm annotations:NAME|FILE, or leave out --covered-only")
    task = options.task or resolve_task(None, options.stream)
    if not options.covered_only:  # the stream's own errors (a label not in the task's set, ...) first
        stream = load_stream(options.stream, options.limit, options.seed, task.labels)
    answerer, client = build_answerer(options.llm, settings, task)
    if options.covered_only:
        whole = load_stream(options.stream, None, options.seed, task.labels)
        covered = [item for item in whole.items if item.id in answerer.by_id][: options.limit]
        if not covered:
            raise AtlasError(f"{options.llm}: none of the {len(whole.items)} items of the stream {options.stream!r} has a recorded answer; "
                             "record them with `atlas cascade annotate`")
        stream = Stream(whole.name, covered, whole.labels)
    if isinstance(answerer, AnnotationAnswerer):
        answerer.check_covers([i.id for i in stream.items], [i.text for i in stream.items])
    return task, stream, answerer, client


def run_cascade(options: CascadeOptions, settings: AtlasSettings, out: Path | None = None,
                progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    task, stream, answerer, client = open_stream(options, settings)
    corpus, dropped = unlabelled_texts(options.unlabelled, stream)
    ids, texts = [i.id for i in stream.items], [i.text for i in stream.items]
    levels = build_levels(options.levels, len(stream.labels), options.seed)
    llm = LLMLevel(answerer, cost=LEVEL_COSTS["llm"])
    policy = build_policy(options, [level.cost for level in levels] + [llm.cost])
    cascade = OnlineCascade(levels, llm, policy, batch_size=options.batch_size, drift=DisagreementDrift())
    started = time.perf_counter()
    takers = cascade.observe_unlabelled(corpus)  # once, before the first item (the topics fitted on it)
    corpus_seconds = time.perf_counter() - started
    run = cascade.run(ids, texts, progress)
    answer_only = answer_speed(levels, texts)
    truth = [i.label for i in stream.items]
    reference = answerer.reference(ids) if isinstance(answerer, AnnotationAnswerer) else None
    # dollars: what the live model's calls were metered at (recorded answers cost nothing to replay)
    spent = client.meter.totals().cost_usd if client is not None else 0.0
    dollars = spent / llm.calls_ if llm.calls_ else 0.0
    results = {
        "stream": options.stream, "policy": options.policy, "mu": options.mu, "budget": options.budget, "seed": options.seed,
        "threshold": options.threshold, "llm": options.llm, "covered_only": options.covered_only, "levels": [level.name for level in levels] + [llm.name],
        # texts: what the levels took (0 when no level learns without labels, e.g. --levels hashed)
        "unlabelled": {"source": options.unlabelled, "texts": len(corpus) if takers else 0, "dropped_as_stream_items": dropped,
                       "seconds": round(corpus_seconds, 2)},
        "task": task.name, "labels": list(task.labels),
        **summarize(run, truth, {level.name: level.cost for level in [*levels, llm]}, llm.name, reference, dollars, task.labels, task.headline_index),
        "items_per_s_answer_only": answer_only,
        "by_source": phase_figures(run.outcomes, truth, [i.source for i in stream.items], task.labels),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with (out / "items.jsonl").open("w", encoding="utf-8") as sink:
            for outcome, label in zip(run.outcomes, truth):
                sink.write(json.dumps({**outcome.to_dict(), "label": label}) + "\n")
        (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        plot_stream(run.outcomes, [level.name for level in levels] + [llm.name], out / "llm_rate.png", out / "level_shares.png")
        from benchmarks.reports import plot_classes

        plot_classes([o.prediction for o in run.outcomes], truth, task.labels, out / "classes.png")
    return results


def plot_stream(outcomes, level_names: list[str], rate_path: Path, shares_path: Path, window: int = 200) -> None:
    from matplotlib.figure import Figure  # the object API: no pyplot state, the caller's backend untouched

    from benchmarks.reports import rolling

    x = list(range(1, len(outcomes) + 1))
    fig = Figure(figsize=(9, 3.5))
    axis = fig.subplots()
    axis.plot(x, rolling([1.0 if o.llm_label is not None or o.llm_unparsed else 0.0 for o in outcomes], window))
    axis.set_xlabel("item")
    axis.set_ylabel(f"LLM-call rate (last {window})")
    axis.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(rate_path, dpi=110)
    fig = Figure(figsize=(9, 3.5))
    axis = fig.subplots()
    axis.stackplot(x, *[rolling([1.0 if o.answered_by == name else 0.0 for o in outcomes], window) for name in level_names], labels=level_names)
    axis.set_ylim(0, 1)
    axis.set_xlabel("item")
    axis.set_ylabel(f"share answered (last {window})")
    axis.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(shares_path, dpi=110)
