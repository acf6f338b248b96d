"""What a model backend must do. Metering and caching live in the client, not here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from atlas.llm.types import ChatMessage, GenerationParams, Generation, Usage


@runtime_checkable
class Backend(Protocol):
    """Turns chat messages into text. ``model`` names the model for prices and cache keys."""

    model: str
    is_local: bool

    def generate(self, messages: list[ChatMessage], params: GenerationParams) -> Generation: ...


@runtime_checkable
class LabelScoringBackend(Backend, Protocol):
    """A backend that can score candidate label words as the next token, in batches."""

    def score_next_token(
        self, prompts: Sequence[list[ChatMessage]], labels: Sequence[str]
    ) -> tuple[list[list[float]], Usage]:
        """Log-probability of each label's first token after each prompt's assistant turn."""
        ...
