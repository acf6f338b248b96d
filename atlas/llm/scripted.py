"""A deterministic double for tests: replies from a list or a function, metered like the rest."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from atlas.errors import LLMError
from atlas.llm.types import ChatMessage, Generation, GenerationParams, Usage

Replier = Callable[[list[ChatMessage]], str]
LabelScorer = Callable[[list[ChatMessage], Sequence[str]], Sequence[float]]


def count_tokens(text: str) -> int:
    """A crude, stable token count (whitespace words) so that scripted runs meter something."""
    return len(text.split())


class ScriptedBackend:
    """Replies in order from ``replies`` (or by calling it); never touches the network.

    ``label_scorer`` optionally returns label probabilities for a prompt, which makes the
    double usable wherever next-token label scores are needed.
    """

    is_local = True

    def __init__(
        self,
        replies: Sequence[str] | Replier,
        model: str = "scripted",
        cycle: bool = False,
        label_scorer: LabelScorer | None = None,
    ) -> None:
        self.model = model
        self._replier = replies if callable(replies) else None
        self._replies = list(replies) if not callable(replies) else []
        self._cycle = cycle
        self._next = 0
        self._label_scorer = label_scorer
        self.calls: list[list[ChatMessage]] = []

    @property
    def can_score_labels(self) -> bool:
        return self._label_scorer is not None

    def generate(self, messages: list[ChatMessage], params: GenerationParams) -> Generation:
        self.calls.append(messages)
        text = self._reply(messages)
        words = text.split()
        finish = "stop"
        if len(words) > params.max_tokens:
            text, finish = " ".join(words[: params.max_tokens]), "length"
        prompt_tokens = sum(count_tokens(m.content) for m in messages)
        return Generation(text, Usage(prompt_tokens, count_tokens(text)), None, finish)

    def score_next_token(
        self, prompts: Sequence[list[ChatMessage]], labels: Sequence[str]
    ) -> tuple[list[list[float]], Usage]:
        if self._label_scorer is None:
            raise LLMError("this scripted model was built without a label_scorer")
        rows = []
        for messages in prompts:
            self.calls.append(messages)
            probs = list(self._label_scorer(messages, labels))
            rows.append([math.log(p) if p > 0 else -math.inf for p in probs])
        tokens = sum(count_tokens(m.content) for msgs in prompts for m in msgs)
        return rows, Usage(tokens, 0)

    def _reply(self, messages: list[ChatMessage]) -> str:
        if self._replier is not None:
            return self._replier(messages)
        if self._next >= len(self._replies):
            if not self._cycle or not self._replies:
                raise LLMError(
                    f"scripted model {self.model!r} ran out of replies after {self._next} calls; "
                    "give more replies or cycle=True"
                )
            self._next = 0
        reply = self._replies[self._next]
        self._next += 1
        return reply
