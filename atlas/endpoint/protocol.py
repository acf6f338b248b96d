"""The OpenAI chat-completions shapes the endpoint reads and writes: the request (validated),
the text to classify in it, the completion it answers with, and OpenAI's error JSON."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import JSONResponse

ErrorType = Literal["invalid_request_error", "authentication_error", "not_found_error", "upstream_error", "server_error"]


class EndpointError(Exception):
    """A refusal the client gets as OpenAI's error JSON, with an HTTP status."""

    def __init__(self, status: int, message: str, type_: ErrorType = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=headers)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""

    def to_openai(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ChatRequest(BaseModel):
    """The parameters this endpoint reads; others (temperature, top_p, user...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    n: int = 1
    tools: list[Any] | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("the cascade gives one answer per request: n must be 1")
        return value


def parse_request(body: bytes) -> ChatRequest:
    import orjson

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise EndpointError(400, f"the request body is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise EndpointError(400, "the request body must be a JSON object with `model` and `messages`")
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise EndpointError(400, f"invalid request: {where}: {first['msg']}", param=where) from None
    if request.stream:
        raise EndpointError(400, "streaming is not supported: the cascade answers with one label; send stream=false", param="stream")
    if request.tools:
        raise EndpointError(400, "tools are not supported: the cascade answers a classification prompt with a label", param="tools")
    return request


def text_to_classify(request: ChatRequest) -> str:
    """The last user message's text (its text parts, for a multi-part message)."""
    for message in reversed(request.messages):
        if message.role == "user":
            text = message.text()
            if not text.strip():
                raise EndpointError(400, "the last user message is empty: it should hold the text to classify", param="messages")
            return text
    raise EndpointError(400, "no user message: the cascade classifies the text of the last user message", param="messages")


def completion(number: int, model: str, label: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-cascade-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": label}, "finish_reason": "stop", "logprobs": None}],
        "usage": usage,
    }
