"""Zero-shot classification by scoring label words as the model's next token.

Small models prefer some label words whatever the input. Calibration divides that preference
out, p_calibrated proportional to p(label | text) / bias, with the bias measured without labels:

- ``content_free`` (Zhao et al., 2021, "Calibrate Before Use"): the label distribution on
  content-free inputs such as "N/A";
- ``batch`` (Zhou et al., 2023, "Batch Calibration"): the mean label distribution over the inputs
  seen so far. It is online: an item is calibrated with the items before it and itself, never
  with later items, and never with labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from atlas.llm.client import LLMClient
from atlas.llm.types import ChatMessage
from policies.cascade.task import Task

Calibration = Literal["none", "content_free", "batch"]
CALIBRATIONS: tuple[Calibration, ...] = ("none", "content_free", "batch")
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


@dataclass
class LabelPrompt:
    """How a text becomes a prompt whose next token should be one of the label words.

    ``labels`` are the words scored, in class order (class 0 first); ``alternatives`` optionally
    gives each class several answer words (a class's score is the sum of their probabilities).
    A word may be several tokens long: backends that can score whole continuations do so."""

    labels: tuple[str, ...]
    instruction: str
    system: str | None = None
    max_words: int | None = None
    # Prefilled start of the answer (a trailing assistant message): puts the label word next.
    answer_prefix: str | None = None
    alternatives: tuple[tuple[str, ...], ...] | None = None

    @classmethod
    def from_task(cls, task: Task) -> LabelPrompt:
        """The prompt of a task: its template, and per class the words the model answers with."""
        words = task.answer_words()
        return cls(labels=tuple(w[0] for w in words), instruction=task.prompt, system=task.system,
                   max_words=task.max_words, answer_prefix=task.answer_prefix, alternatives=words)

    def class_words(self) -> tuple[tuple[str, ...], ...]:
        return self.alternatives if self.alternatives is not None else tuple((label,) for label in self.labels)

    def messages(self, text: str) -> list[ChatMessage]:
        if self.max_words is not None:
            words = text.split()
            if len(words) > self.max_words:
                text = " ".join(words[: self.max_words]) + " ..."
        content = self.instruction.format(text=text, labels=" or ".join(self.labels))
        msgs = [ChatMessage(role="system", content=self.system)] if self.system else []
        msgs.append(ChatMessage(role="user", content=content))
        if self.answer_prefix:
            msgs.append(ChatMessage(role="assistant", content=self.answer_prefix))
        return msgs


SENTIMENT_PROMPT = LabelPrompt(
    labels=("negative", "positive"),
    instruction="{text}\n\nDid the reviewer like the movie? Answer positive or negative.",
    max_words=120,
    answer_prefix="The reviewer's opinion is",
)


def normalise_label_logprobs(logprobs: np.ndarray) -> np.ndarray:
    """Softmax over the label words only (a label the model never proposes gets ~0)."""
    logprobs = np.where(np.isfinite(logprobs), logprobs, -1e9)
    shifted = logprobs - logprobs.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    return probs / probs.sum(axis=1, keepdims=True)


def per_class_logprobs(word_logprobs: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Log of the summed probability of each class's answer words (columns grouped by class)."""
    if all(size == 1 for size in sizes):
        return word_logprobs
    bounds = np.cumsum([0, *sizes])
    finite = np.where(np.isfinite(word_logprobs), word_logprobs, -1e9)
    return np.column_stack([np.logaddexp.reduce(finite[:, a:b], axis=1) for a, b in zip(bounds[:-1], bounds[1:])])


def can_score_exactly(client: LLMClient, words: Sequence[Sequence[str]]) -> bool:
    """May the label choice be made from label-word scores? Yes when the backend scores whole
    continuations (the local model), or, for backends that see only the first generated token (an
    OpenAI-compatible endpoint's top log-probabilities), when no class's word begins like another
    class's word (then the first token tells them apart); otherwise chat answers are parsed."""
    if not client.supports_label_scores:
        return False
    if getattr(client.backend, "scores_continuations", False):
        return True
    firsts = [(n, w.strip().lower()) for n, group in enumerate(words) for w in group]
    return not any(a != b and (x.startswith(y) or y.startswith(x) or x.split()[0] == y.split()[0]) for a, x in firsts for b, y in firsts)


def _divide_out(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    adjusted = probs / np.clip(bias, 1e-12, None)
    return adjusted / adjusted.sum(axis=-1, keepdims=True)


@dataclass
class ZeroShotClassifier:
    """``predict_proba`` over label words with a metered client, calibrated without labels."""

    client: LLMClient
    prompt: LabelPrompt
    calibration: Calibration = "batch"
    content_free_: np.ndarray | None = field(default=None, init=False)
    label_sum_: np.ndarray | None = field(default=None, init=False)
    n_seen_: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration {self.calibration!r} is not one of {', '.join(CALIBRATIONS)}")

    def fit_calibration(self) -> np.ndarray:
        """Measure the label bias on content-free inputs (a few model calls, no labels)."""
        self.content_free_ = self.raw_proba(CONTENT_FREE_INPUTS).mean(axis=0)
        return self.content_free_

    def raw_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated label probabilities; does not change the classifier's state."""
        words = self.prompt.class_words()
        flat = [w for group in words for w in group]
        scores = np.asarray(self.client.score_labels([self.prompt.messages(t) for t in texts], flat).logprobs, dtype=np.float64)
        return normalise_label_logprobs(per_class_logprobs(scores.reshape(len(texts), len(flat)), [len(g) for g in words]))

    def calibrate(self, raw: np.ndarray, calibration: Calibration | None = None) -> np.ndarray:
        """Apply a calibration to raw probabilities of items seen in this order.

        ``batch`` treats ``raw`` as the next items of the stream: it updates the running mean
        with them, row by row, and calibrates each row with the mean up to and including it."""
        mode = calibration or self.calibration
        if mode == "none":
            return raw
        if mode == "content_free":
            content_free = self.content_free_ if self.content_free_ is not None else self.fit_calibration()
            return _divide_out(raw, content_free)
        start = self.label_sum_ if self.label_sum_ is not None else np.zeros(raw.shape[1])
        running_sums = start + np.cumsum(raw, axis=0)
        counts = self.n_seen_ + np.arange(1, len(raw) + 1)[:, None]
        self.label_sum_, self.n_seen_ = running_sums[-1], int(counts[-1, 0])
        return _divide_out(raw, running_sums / counts)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.calibrate(self.raw_proba(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts).argmax(axis=1)
