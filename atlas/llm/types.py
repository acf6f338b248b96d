"""The data that crosses the model-client boundary: messages in; text, usage, latency out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    """One function call a model asked for; `arguments` is the JSON text exactly as the model wrote it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    arguments: str = "{}"


class ChatMessage(BaseModel):
    """A chat turn. Assistant turns may carry tool calls; a tool turn answers one call by its id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @model_validator(mode="after")
    def _tool_fields_fit_the_role(self) -> ChatMessage:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("a tool message needs the tool_call_id it answers (and only a tool message has one)")
        return self

    def to_openai(self) -> dict[str, Any]:
        """The message as the Chat Completions API takes it."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            # an empty string, never null: llama.cpp's server refuses a null content and its templates read it
            out["content"] = self.content
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


MessagesLike = Sequence[ChatMessage | Mapping[str, Any]] | str


def as_messages(messages: MessagesLike) -> list[ChatMessage]:
    """Accept a plain prompt, dicts as the OpenAI API takes them, or ChatMessage objects."""
    if isinstance(messages, str):
        return [ChatMessage(role="user", content=messages)]
    out = [m if isinstance(m, ChatMessage) else ChatMessage.model_validate(dict(m)) for m in messages]
    if not out:
        raise ValueError("messages must not be empty: pass at least one user message")
    return out


class ToolSpec(BaseModel):
    """A function the model may call: name, what it does, and a JSON schema of its arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


class JsonSchemaFormat(BaseModel):
    """Structured output: the reply must be one JSON object valid under `schema`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(alias="schema")

    def to_openai(self) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema_, "strict": True}}


class GenerationParams(BaseModel):
    """Sampling parameters, tools and output format; part of the response-cache key."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_logprobs: int = Field(default=0, ge=0, le=20, description="alternatives per token; 0 = none")
    logprobs: bool = False
    stop: tuple[str, ...] = ()
    seed: int = 0
    tools: tuple[ToolSpec, ...] = ()
    # "auto", "required" (some tool), "none", or the name of the one tool the model must call
    tool_choice: str = "auto"
    response_format: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _choice_names_a_tool(self) -> GenerationParams:
        names = {t.name for t in self.tools}
        if self.tool_choice not in ("auto", "required", "none") and self.tool_choice not in names:
            raise ValueError(f"tool_choice {self.tool_choice!r} is not one of the tools ({', '.join(sorted(names)) or 'none given'})")
        if self.tools and self.response_format is not None:
            raise ValueError("give tools or a response_format, not both")
        return self


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
    tool_calls: tuple[ToolCall, ...] = ()


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
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def truncated(self) -> bool:
        """The model stopped because it hit the completion cap: the reply is cut off."""
        return self.finish_reason == "length"


@dataclass(frozen=True)
class LabelScores:
    """Next-token log-probabilities of each label word, one row per prompt."""

    labels: tuple[str, ...]
    logprobs: list[list[float]]
    usage: Usage
    latency_s: float
    cost_usd: float
