"""Recorded LLM answers: the file `atlas cascade annotate` writes and the cascade replays.

A JSONL file. Its first line is a header naming the task the answers belong to:
    {"recorded_answers": 1, "task": "text-sources", "labels": ["imdb", ...], "model": "local:...", "stream": ..., "seed": 0}
then one record per item, in stream order:
    {"id": "imdb-17", "label": "imdb", "probs": [...], "raw": [...], "model": "...", "text_sha1": "3f2a9c01b7d4"}
`label` is a label name (null when the model's answer named no label); `probs` (calibrated) and
`raw` follow the header's label order; `text_sha1` is the start of the SHA-1 of the item's text, so
that a replay on a changed text is refused. On replay the header's labels must be the task's
(the same names; another order is re-ordered). Files recorded before label names (no header, a
class index per record) are still read, in the task's class order, when their width fits the task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atlas.errors import AtlasError
from policies.cascade.llm_level import LLMAnswers

FORMAT_VERSION = 1
HEADER_KEY = "recorded_answers"


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def header(task_name: str, labels: Sequence[str], model: str, stream: str, seed: int) -> dict[str, Any]:
    return {HEADER_KEY: FORMAT_VERSION, "task": task_name, "labels": list(labels), "model": model, "stream": stream, "seed": seed}


def record(item_id: str, text: str, labels: Sequence[str], label: int | None, probs, raw, model: str) -> dict[str, Any]:
    return {"id": item_id, "label": None if label is None else labels[label], "probs": [round(float(x), 6) for x in probs],
            "raw": [round(float(x), 6) for x in raw], "model": model, "text_sha1": text_hash(text)}


def read_records(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header or None, records); a line that is not JSON is an error naming the line."""
    head: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise AtlasError(f"{path}, line {number}: not JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise AtlasError(f"{path}, line {number}: expected a JSON object")
        if HEADER_KEY in row:
            if number != 1 and head is None and rows:
                raise AtlasError(f"{path}, line {number}: the header must be the first line")
            head = row
            continue
        row["_line"] = number
        rows.append(row)
    return head, rows


class AnnotationAnswerer:
    """Replays recorded answers (id, label, probs, model), as the OCL paper's authors did, checked
    against the task: the labels a file was recorded with must be the task's."""

    def __init__(self, paths: Path | Sequence[Path], labels: Sequence[str] | int) -> None:
        self.paths = [paths] if isinstance(paths, Path) else list(paths)
        self.path = self.paths[0]
        self.labels = tuple(labels) if not isinstance(labels, int) else tuple(str(n) for n in range(labels))
        self.named = not isinstance(labels, int)
        self.classes = len(self.labels)
        self.by_id: dict[str, tuple[int | None, list[float]]] = {}
        self.hashes: dict[str, str] = {}
        self.model = ""
        for path in self.paths:
            self._read(path)

    def _read(self, path: Path) -> None:
        if not path.is_file():
            raise AtlasError(f"{path}: no annotation file; record one with `atlas cascade annotate --out {path}`")
        head, rows = read_records(path)
        order = list(range(self.classes))  # file column -> task class
        file_labels: list[str] | None = None
        if head is not None:
            file_labels = [str(x) for x in head.get("labels") or []]
            if self.named and sorted(x.lower() for x in file_labels) != sorted(x.lower() for x in self.labels):
                raise AtlasError(f"{path} was recorded for the labels {', '.join(file_labels)} (task {head.get('task')!r}), "
                                 f"but this run's task has {', '.join(self.labels)}: record answers for this task with "
                                 "`atlas cascade annotate --task ...`, or run with the task they were recorded for")
            if self.named:
                folded = [x.lower() for x in self.labels]
                order = [folded.index(x.lower()) for x in file_labels]
        for row in rows:
            number = row["_line"]
            try:
                label = row["label"]
                probs = [float(p) for p in row.get("probs") or []]
                ident = str(row["id"])
            except (KeyError, TypeError, ValueError) as error:
                raise AtlasError(f"{path}, line {number}: not an annotation record ({error}); expected {{\"id\", \"label\", \"probs\", \"model\"}}") from None
            index = self._label_index(path, number, label, file_labels, order)
            if probs:
                if len(probs) != self.classes:
                    raise AtlasError(f"{path}, line {number}: {len(probs)} class probabilities, but the task has {self.classes} classes")
                reordered = [0.0] * self.classes
                for column, value in enumerate(probs):
                    reordered[order[column]] = value
                probs = reordered
            self.by_id[ident] = (index, probs or [1.0 / self.classes] * self.classes)
            if isinstance(row.get("text_sha1"), str):
                self.hashes[ident] = row["text_sha1"]
            self.model = str(row.get("model", ""))

    def _label_index(self, path: Path, number: int, label, file_labels: list[str] | None, order: list[int]) -> int | None:
        if label is None:
            return None
        if isinstance(label, str) and file_labels is not None:
            if label not in file_labels:
                raise AtlasError(f"{path}, line {number}: label {label!r} is not one of the file's labels ({', '.join(file_labels)})")
            return order[file_labels.index(label)]
        if isinstance(label, str):
            folded = [x.lower() for x in self.labels]
            if label.lower() not in folded:
                raise AtlasError(f"{path}, line {number}: label {label!r} is not in the task's label set ({', '.join(self.labels)})")
            return folded.index(label.lower())
        if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < self.classes:
            return order[label] if file_labels is not None else label
        raise AtlasError(f"{path}, line {number}: label {label!r} is outside 0..{self.classes - 1}")

    def check_covers(self, ids: Sequence[str], texts: Sequence[str] | None = None) -> None:
        """Fail before the stream starts if any item has no recorded answer, or another text."""
        missing = [(n, i) for n, i in enumerate(ids) if i not in self.by_id]
        if missing:
            position, item = missing[0]
            raise AtlasError(
                f"{', '.join(map(str, self.paths))} does not cover the stream: {len(missing)} of {len(ids)} items have no recorded answer "
                f"(first: {item!r} at position {position}); record them with `atlas cascade annotate`, lower --limit, or pass --covered-only "
                f"to run on the items they cover"
            )
        if texts is not None:
            changed = [(n, i) for n, (i, t) in enumerate(zip(ids, texts)) if i in self.hashes and self.hashes[i] != text_hash(t)]
            if changed:
                position, item = changed[0]
                raise AtlasError(f"{', '.join(map(str, self.paths))}: {len(changed)} recorded answers are for other texts than the stream's "
                                 f"(first: {item!r} at position {position}); the stream's source changed since they were recorded: record them again")

    def __call__(self, ids: Sequence[str], texts: Sequence[str]) -> LLMAnswers:
        rows = [self.by_id[i] for i in ids]
        return LLMAnswers([label for label, _ in rows], np.array([probs for _, probs in rows]))

    def reference(self, ids: Sequence[str]) -> list[int | None]:
        return [self.by_id[i][0] for i in ids]
