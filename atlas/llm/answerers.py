"""What answers for the cascade's LLM level: a live prompted classifier, or recorded answers replayed."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from atlas.errors import AtlasError
from atlas.llm.classify import LabelPrompt, ZeroShotClassifier
from atlas.llm.client import LLMClient
from policies.cascade.llm_level import LLMAnswers


class AnnotationAnswerer:
    """Replays a JSONL of recorded answers (id, label, probs, model), as the OCL paper's authors did."""

    def __init__(self, paths: Path | Sequence[Path], classes: int) -> None:
        self.paths = [paths] if isinstance(paths, Path) else list(paths)
        self.path = self.paths[0]
        self.by_id: dict[str, tuple[int | None, list[float]]] = {}
        self.model = ""
        self.classes = classes
        for path in self.paths:
            self._read(path, classes)

    def _read(self, path: Path, classes: int) -> None:
        if not path.is_file():
            raise AtlasError(f"{path}: no annotation file; record one with `atlas cascade annotate --out {path}`")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                label = record["label"]
                probs = [float(p) for p in record.get("probs") or []]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise AtlasError(f"{path}, line {number}: not an annotation record ({error}); expected {{\"id\", \"label\", \"probs\", \"model\"}}") from None
            if label is not None and not (isinstance(label, int) and 0 <= label < classes):
                raise AtlasError(f"{path}, line {number}: label {label!r} is outside 0..{classes - 1}")
            self.by_id[str(record["id"])] = (label, probs or [1.0 / classes] * classes)
            self.model = str(record.get("model", ""))

    def check_covers(self, ids: Sequence[str]) -> None:
        """Fail before the stream starts if any item has no recorded answer."""
        missing = [(n, i) for n, i in enumerate(ids) if i not in self.by_id]
        if missing:
            position, item = missing[0]
            raise AtlasError(
                f"{', '.join(map(str, self.paths))} does not cover the stream: {len(missing)} of {len(ids)} items have no recorded answer "
                f"(first: {item!r} at position {position}); record them with `atlas cascade annotate` or lower --limit"
            )

    def __call__(self, ids: Sequence[str], texts: Sequence[str]) -> LLMAnswers:
        rows = [self.by_id[i] for i in ids]
        return LLMAnswers([label for label, _ in rows], np.array([probs for _, probs in rows]))

    def reference(self, ids: Sequence[str]) -> list[int | None]:
        return [self.by_id[i][0] for i in ids]


class LiveAnswerer:
    """Asks a model: label words scored by next-token log-probabilities where the backend gives them,
    otherwise a short chat answer parsed for a label word (None when it names no label).

    A local model scores batches of `batch_size` in process. A remote endpoint is sent `concurrency`
    requests at once (default: the endpoint's `openai.concurrency`), since each waits on the network;
    answers keep the items' order, and batch calibration still sees the items in stream order."""

    def __init__(self, client: LLMClient, prompt: LabelPrompt, batch_size: int = 8, concurrency: int | None = None) -> None:
        self.client = client
        self.prompt = prompt
        self.batch_size = batch_size
        self.scores = client.supports_label_scores
        self.classifier = ZeroShotClassifier(client, prompt) if self.scores else None
        remote = not getattr(client.backend, "is_local", True)
        default = getattr(getattr(client.backend, "settings", None), "concurrency", 1) if remote else 1
        self.concurrency = concurrency if concurrency is not None else default
        if self.concurrency < 1:
            raise AtlasError(f"concurrency must be at least 1, got {self.concurrency}")

    def _map(self, work, items: Sequence) -> list:  # noqa: ANN001 (a function of one item)
        """`work` over `items`, in order: one at a time, or `concurrency` at once on threads."""
        if self.concurrency == 1 or len(items) <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="llm-answer") as pool:
            return list(pool.map(work, items))

    def __call__(self, ids: Sequence[str], texts: Sequence[str]) -> LLMAnswers:
        if self.classifier is not None:
            size = self.batch_size if self.concurrency == 1 else 1  # a remote request scores one prompt anyway
            parts = [texts[i:i + size] for i in range(0, len(texts), size)]
            raw = np.vstack(self._map(self.classifier.raw_proba, parts))
            probs = self.classifier.calibrate(raw)  # in stream order, after all are scored
            return LLMAnswers([int(p.argmax()) for p in probs], probs)

        def ask(text: str) -> int | None:
            reply = self.client.chat(self.prompt.messages(text)[:-1] if self.prompt.answer_prefix else self.prompt.messages(text), max_tokens=8, temperature=0.0)
            return parse_label(reply.text, self.prompt.labels)

        labels: list[int | None] = self._map(ask, list(texts))
        k = len(self.prompt.labels)
        probs = np.array([np.eye(k)[y] if y is not None else np.full(k, 1.0 / k) for y in labels])
        return LLMAnswers(labels, probs)


def parse_label(text: str, labels: Sequence[str]) -> int | None:
    """The first label word in a reply (whole words, any case); None when there is none or several tie."""
    found = [(m.start(), n) for n, label in enumerate(labels) for m in [re.search(rf"\b{re.escape(label)}\b", text, re.IGNORECASE)] if m]
    if not found:
        return None
    found.sort()
    return found[0][1]
