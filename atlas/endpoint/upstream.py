"""The upstream OpenAI-compatible model, asked through the real `openai` client (async, so many
upstream calls can be in flight while the cheap levels keep answering)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

from atlas.endpoint.protocol import EndpointError
from atlas.llm.answerers import parse_label


@dataclass(frozen=True)
class UpstreamAnswer:
    label: int | None  # None: the reply named no label
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str


class Upstream:
    def __init__(self, base_url: str, model: str, api_key: str | None, labels: Sequence[str], prompt: str | None,
                 timeout_s: float = 60.0, max_tokens: int = 16, max_retries: int = 2) -> None:
        self.base_url = base_url
        self.model = model
        self.labels = tuple(labels)
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=max_retries)

    def messages(self, text: str, client_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """With a prompt template, the text in it as one user message; without, the client's messages as sent."""
        if self.prompt is None:
            return client_messages
        return [{"role": "user", "content": self.prompt.format(text=text, labels=", ".join(self.labels))}]

    async def classify(self, text: str, client_messages: list[dict[str, Any]]) -> UpstreamAnswer:
        try:
            reply = await self.client.chat.completions.create(
                model=self.model, messages=self.messages(text, client_messages), max_tokens=self.max_tokens, temperature=0.0,  # type: ignore[arg-type]
            )
        except openai.APITimeoutError:
            raise EndpointError(504, f"the upstream model at {self.base_url} did not answer in time", "upstream_error", "upstream_timeout") from None
        except openai.APIConnectionError as error:
            raise EndpointError(502, f"cannot reach the upstream model at {self.base_url}: {error}", "upstream_error", "upstream_unreachable") from None
        except openai.APIStatusError as error:
            raise EndpointError(502, f"the upstream model at {self.base_url} answered HTTP {error.status_code}: {_detail(error)}",
                                "upstream_error", "upstream_failed") from None
        if not reply.choices:
            raise EndpointError(502, f"the upstream model at {self.base_url} answered with no choice", "upstream_error", "upstream_failed")
        content = reply.choices[0].message.content or ""
        usage = reply.usage
        return UpstreamAnswer(
            label=parse_label(content, self.labels), text=content, model=reply.model or self.model,
            prompt_tokens=usage.prompt_tokens if usage else 0, completion_tokens=usage.completion_tokens if usage else 0,
        )

    async def close(self) -> None:
        await self.client.close()


def _detail(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(error.message)
