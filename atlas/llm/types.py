"""The data that crosses the model-client boundary: messages in; text, usage, latency out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: str


MessagesLike = Sequence[ChatMessage | Mapping[str, str]] | str


def as_messages(messages: MessagesLike) -> list[ChatMessage]:
    """Accept a plain prompt, dicts as the OpenAI API takes them, or ChatMessage objects."""
    if isinstance(messages, str):
        return [ChatMessage(role="user", content=messages)]
    out = [m if isinstance(m, ChatMessage) else ChatMessage.model_validate(dict(m)) for m in messages]
    if not out:
        raise ValueError("messages must not be empty: pass at least one user message")
    return out


class GenerationParams(BaseModel):
    """Sampling parameters; part of the response-cache key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_logprobs: int = Field(default=0, ge=0, le=20, description="alternatives per token; 0 = none")
    logprobs: bool = False
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    """What a backend returns for one chat call, before metering."""

    text: str
    usage: Usage
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class Completion:
    """One metered chat call as the caller sees it."""

    text: str
    model: str
    usage: Usage
    latency_s: float
    cost_usd: float
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    cached: bool = False


@dataclass(frozen=True)
class LabelScores:
    """Next-token log-probabilities of each label word, one row per prompt."""

    labels: tuple[str, ...]
    logprobs: list[list[float]]
    usage: Usage
    latency_s: float
    cost_usd: float
