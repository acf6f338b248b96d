"""What answers for the cascade's LLM level: a live prompted classifier, or recorded answers replayed."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from atlas.llm.classify import LabelPrompt, ZeroShotClassifier, can_score_exactly
from atlas.llm.client import LLMClient
from atlas.llm.recorded import AnnotationAnswerer  # recorded answers live in atlas/llm/recorded.py
from policies.cascade.llm_level import LLMAnswers

__all__ = ["AnnotationAnswerer", "LiveAnswerer", "parse_class", "parse_label"]


class LiveAnswerer:
    """Asks a model: label words scored by next-token log-probabilities where the backend gives them,
    otherwise a short chat answer parsed for a label word (None when it names no label)."""

    def __init__(self, client: LLMClient, prompt: LabelPrompt, batch_size: int = 8) -> None:
        self.client = client
        self.prompt = prompt
        self.batch_size = batch_size
        self.scores = can_score_exactly(client, prompt.class_words())
        self.classifier = ZeroShotClassifier(client, prompt) if self.scores else None

    def __call__(self, ids: Sequence[str], texts: Sequence[str]) -> LLMAnswers:
        if self.classifier is not None:
            probs = np.vstack([self.classifier.predict_proba(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)])
            return LLMAnswers([int(p.argmax()) for p in probs], probs)
        labels: list[int | None] = []
        for text in texts:
            reply = self.client.chat(self.prompt.messages(text)[:-1] if self.prompt.answer_prefix else self.prompt.messages(text), max_tokens=8, temperature=0.0)
            labels.append(parse_class(reply.text, self.prompt.class_words()))
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
