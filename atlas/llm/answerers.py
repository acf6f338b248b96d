"""What answers for the cascade's LLM level: a live prompted classifier, or recorded answers replayed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from atlas.errors import AtlasError
from atlas.llm.classify import LabelPrompt, ZeroShotClassifier, can_score_exactly
from atlas.llm.client import LLMClient
from atlas.llm.recorded import AnnotationAnswerer  # recorded answers live in atlas/llm/recorded.py
from policies.cascade.llm_level import LLMAnswers

__all__ = ["AnnotationAnswerer", "LiveAnswerer", "parse_class", "parse_label"]


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
        self.scores = can_score_exactly(client, prompt.class_words())
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
            return parse_class(reply.text, self.prompt.class_words())

        labels: list[int | None] = self._map(ask, list(texts))
        k = len(self.prompt.labels)
        probs = np.array([np.eye(k)[y] if y is not None else np.full(k, 1.0 / k) for y in labels])
        return LLMAnswers(labels, probs)


def parse_label(text: str, labels: Sequence[str]) -> int | None:
    """The first label word in a reply (whole words, any case; where two start at the same place, the
    longer: "very positive" over "very"); None when there is none."""
    found = [(m.start(), -len(label), n) for n, label in enumerate(labels) for m in [re.search(rf"\b{re.escape(label)}\b", text, re.IGNORECASE)] if m]
    if not found:
        return None
    found.sort()
    return found[0][2]


def parse_class(text: str, class_words: Sequence[Sequence[str]]) -> int | None:
    """The class whose answer word comes first in a reply (see parse_label); None when none does."""
    flat = [(word, n) for n, words in enumerate(class_words) for word in words]
    found = parse_label(text, [word for word, _ in flat])
    return None if found is None else flat[found][1]
