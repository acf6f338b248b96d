"""Where a task comes from: a built-in name, a YAML/JSON task file, or flags (which override a file).

Built-in streams carry their task (`imdb` and the other movie-review streams: `sentiment`;
`text-sources`: `text-sources`); a CSV/JSONL stream without a task is read as sentiment, as before."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from atlas.errors import AtlasError
from policies.cascade.task import Task

SENTIMENT = Task(
    name="sentiment",
    labels=("negative", "positive"),
    prompt="{text}\n\nDid the reviewer like the movie? Answer positive or negative.",
    answer_prefix="The reviewer's opinion is",
    max_words=120,
)
TEXT_SOURCES = Task(  # multi-token answer words: the local model does better with them (0.40 vs 0.27 on 48 items)
    name="text-sources",
    labels=("imdb", "rotten_tomatoes", "docs", "license"),
    prompt="{text}\n\nIs this text a movie review, a film blurb, software documentation, or a software license?",
    words={"imdb": ("movie review",), "rotten_tomatoes": ("film blurb",), "docs": ("software documentation",), "license": ("software license",)},
    answer_prefix="Answer: a",
    max_words=80,
)
BUILT_IN_TASKS = {task.name: task for task in (SENTIMENT, TEXT_SOURCES)}
STREAM_TASKS = {"imdb": SENTIMENT, "rotten_tomatoes": SENTIMENT, "imdb-then-rt": SENTIMENT, "imdb-by-length": SENTIMENT,
                "text-sources": TEXT_SOURCES}


class TaskError(AtlasError, ValueError):
    """A task that cannot be used: the message names the file or flag and what to change."""


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'task'}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors())


def read_task_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TaskError(f"{path}: no such task file (a YAML or JSON file with labels, prompt, words)")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise TaskError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    import yaml

    try:
        data = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
    except json.JSONDecodeError as error:
        raise TaskError(f"{path}, line {error.lineno}: not valid JSON ({error.msg})") from None
    except yaml.YAMLError as error:  # the message carries line and column
        raise TaskError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise TaskError(f"{path}: a task file holds a mapping (labels:, prompt:, words:, ...), not {type(data).__name__}")
    return data


def parse_words(spec: str) -> dict[str, list[str]]:
    """`label=word|other word,label2=word2` -> {label: [words]}."""
    words: dict[str, list[str]] = {}
    for part in (p for p in spec.split(",") if p.strip()):
        label, sep, choices = part.partition("=")
        if not sep or not label.strip() or not choices.strip():
            raise TaskError(f"--label-words: {part!r} is not label=word (several words: label=word|other)")
        words[label.strip()] = [w.strip() for w in choices.split("|") if w.strip()]
    return words


def resolve_task(spec: str | None = None, stream: str | None = None, labels: Sequence[str] | None = None,
                 prompt: str | None = None, words: Mapping[str, Sequence[str]] | None = None,
                 headline: str | None = None, answer_prefix: str | None = None) -> Task:
    """The task a run uses: `spec` (a built-in name or a file), else the stream's own task, else
    sentiment; flags given replace the matching fields. Invalid combinations are a TaskError."""
    base: dict[str, Any]
    where = "the task flags"
    if spec:
        if spec in BUILT_IN_TASKS:
            base = BUILT_IN_TASKS[spec].model_dump()
        elif Path(spec).suffix.lower() in (".yaml", ".yml", ".json") or Path(spec).exists():
            base, where = read_task_file(Path(spec)), str(spec)
        else:
            raise TaskError(f"unknown task {spec!r}: use one of {', '.join(BUILT_IN_TASKS)} or a .yaml/.json task file")
    elif labels:
        base = {"name": "custom"}
    else:
        base = STREAM_TASKS.get(stream or "", SENTIMENT).model_dump()
    overrides = {"labels": list(labels) if labels else None, "prompt": prompt, "words": dict(words) if words else None,
                 "headline": headline, "answer_prefix": answer_prefix}
    for key, value in overrides.items():
        if value is not None:
            base[key] = value
    if overrides["labels"] and "words" in base and base["words"] and set(base["words"]) - set(overrides["labels"]):
        base.pop("words")  # a new label set: the old task's words cannot apply
    if overrides["labels"] and headline is None and base.get("headline") not in overrides["labels"]:
        base.pop("headline", None)  # nor its headline class
    try:
        return Task.model_validate(base)
    except ValidationError as error:
        raise TaskError(f"{where}: invalid task: {_problems(error)}") from None
