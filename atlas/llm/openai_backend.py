"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp server) via the `openai` package."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion

from atlas.config import OpenAISettings
from atlas.errors import LLMConfigError, LLMContextOverflow, LLMError, LLMRejected, LLMResponseError
from atlas.llm.scripted import count_tokens
from atlas.llm.types import ChatMessage, Generation, GenerationParams, TokenLogprob, ToolCall, Usage

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
    LLMResponseError,
)
# Reasoning models take max_completion_tokens and only the default temperature.
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
MAX_RETRY_AFTER_S = 30.0
# How servers say that a prompt is too long: OpenAI's error code, vLLM's, llama.cpp's and Ollama's wording.
CONTEXT_OVERFLOW = re.compile(
    r"context_length_exceeded|maximum context length|context length|exceeds? the (available )?context|context size|too many tokens|prompt is too long",
    re.IGNORECASE,
)
REQUEST_INVALID = re.compile(r"validation error|literal_error|unrecognized request argument|extra_forbidden", re.IGNORECASE)
CONTEXT_SIZE = re.compile(r"(?:maximum context length is|context size of|n_ctx(?:_slot)?\s*[=:]?|context window of)\s*(\d+)", re.IGNORECASE)


class OpenAIBackend:
    is_local = False
    can_score_labels = True

    def __init__(self, model: str, settings: OpenAISettings) -> None:
        if settings.api_key is None or not settings.api_key.get_secret_value():
            raise LLMConfigError(
                f"model 'openai:{model}' needs an API key: set OPENAI_API_KEY "
                "(any non-empty value for local servers such as vLLM or Ollama), "
                "or openai.api_key in atlas.yaml"
            )
        self.model = model
        self.settings = settings
        self.base_url = settings.base_url or "https://api.openai.com/v1"
        self._client = openai.OpenAI(
            api_key=settings.api_key.get_secret_value(),
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            max_retries=0,  # retries are ours: bounded, logged, and applied to malformed replies too
        )
        self._jitter = random.Random()  # retry timing only; never affects a result
        # how this server takes a JSON schema: OpenAI's `json_schema`, or `json_object` with a `schema` (llama.cpp)
        self.schema_form = "json_schema"

    @property
    def reasoning(self) -> bool:
        """Reasoning models spend completion tokens thinking before they answer."""
        return self.model.startswith(REASONING_PREFIXES)

    def generate(self, messages: list[ChatMessage], params: GenerationParams) -> Generation:
        request = self._request(messages, params)
        return self._with_retries(lambda timeout: self._parse(self._post_chat(request, timeout), messages))

    def _post_chat(self, request: dict[str, Any], timeout: float) -> ChatCompletion:
        """POST the request as it is: it is plain JSON already, so this skips the client's walk over the typed
        parameters (`chat.completions.create` transforms every message and tool; about a third of the CPU of a
        call here), which bounds how many episodes one process keeps in flight."""
        options: dict[str, Any] = {"timeout": timeout, "security": {"bearer_auth": True}}
        return self._client.post("/chat/completions", body=request, cast_to=ChatCompletion, options=options)  # type: ignore[call-overload]

    def score_next_token(
        self, prompts: Sequence[list[ChatMessage]], labels: Sequence[str]
    ) -> tuple[list[list[float]], Usage]:
        """Label scores from the top-20 log-probabilities of the first generated token."""
        params = GenerationParams(max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20)
        rows, usage = [], Usage()
        for messages in prompts:
            generation = self.generate(messages, params)
            usage = usage + Usage(generation.usage.prompt_tokens, 0)
            top = generation.logprobs[0].top if generation.logprobs else {}
            rows.append([_label_logprob(top, label) for label in labels])
        return rows, usage

    def list_models(self) -> list[str]:
        """Model ids the endpoint offers (used by `atlas doctor`)."""
        page = self._with_retries(lambda timeout: self._client.models.list(timeout=timeout))
        return [m.id for m in page.data]

    def _request(self, messages: list[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in messages],
            "seed": params.seed,
        }
        if self.reasoning:  # the cap covers hidden reasoning too: leave room for it
            request["max_completion_tokens"] = params.max_tokens + self.settings.reasoning_tokens
        else:
            request["max_tokens"] = params.max_tokens
            request["temperature"] = params.temperature
        if params.stop:
            request["stop"] = list(params.stop)
        if params.logprobs or params.top_logprobs:
            request["logprobs"] = True
            if params.top_logprobs:
                request["top_logprobs"] = params.top_logprobs
        if params.tools:
            request["tools"] = [tool.to_openai() for tool in params.tools]
            choice = params.tool_choice
            request["tool_choice"] = choice if choice in ("auto", "required", "none") else {"type": "function", "function": {"name": choice}}
        if params.response_format is not None:
            fmt = params.response_format
            request["response_format"] = fmt.to_openai() if self.schema_form == "json_schema" else {"type": "json_object", "schema": fmt.schema_}
        return request

    def _with_retries(self, call: Callable[[float], T]) -> T:
        """Bounded retries with capped, jittered backoff, all within one overall deadline."""
        attempts = self.settings.max_retries + 1
        deadline = time.monotonic() + self.settings.deadline_s
        for attempt in range(attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LLMError(f"{self.base_url} did not answer within the {self.settings.deadline_s:g} s deadline (openai.deadline_s) after {attempt} attempts")
            try:
                return call(min(self.settings.timeout_s, remaining))
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise LLMConfigError(
                    f"{self.base_url} refused the API key (HTTP {exc.status_code}): "
                    "set OPENAI_API_KEY to a key this endpoint accepts"
                ) from None
            except openai.NotFoundError as exc:
                raise LLMConfigError(
                    f"{self.base_url} does not serve model {self.model!r} (HTTP 404): {_short(exc)}"
                ) from None
            except (openai.APIResponseValidationError, json.JSONDecodeError) as exc:
                error: Exception = LLMResponseError(f"malformed response from {self.base_url}: {_short(exc)}")
                if attempt + 1 == attempts:
                    raise error from None
                delay = self._delay(attempt, exc)
            except openai.InternalServerError as exc:
                if REQUEST_INVALID.search(str(exc)):  # some servers answer a malformed request with 500
                    raise LLMRejected(f"{self.base_url} rejected the request (HTTP {exc.status_code}): {_short(exc)}") from None
                if attempt + 1 == attempts:
                    raise LLMError(f"{self.base_url} failed after {attempts} attempts: {type(exc).__name__}: {_short(exc)}") from None
                delay = self._delay(attempt, exc)
            except RETRYABLE as exc:
                if attempt + 1 == attempts:
                    raise LLMError(
                        f"{self.base_url} failed after {attempts} attempts: {type(exc).__name__}: {_short(exc)}"
                    ) from None
                delay = self._delay(attempt, exc)
            except openai.APIStatusError as exc:
                if exc.status_code in (400, 413) and CONTEXT_OVERFLOW.search(str(exc)):
                    size = CONTEXT_SIZE.search(str(exc))
                    raise LLMContextOverflow(
                        f"{self.base_url}: the prompt does not fit {self.model}'s context window: {_short(exc)}", int(size.group(1)) if size else None
                    ) from None
                if 400 <= exc.status_code < 500:
                    raise LLMRejected(f"{self.base_url} rejected the request (HTTP {exc.status_code}): {_short(exc)}") from None
                raise LLMError(f"{self.base_url} failed (HTTP {exc.status_code}): {_short(exc)}") from None
            if time.monotonic() + delay >= deadline:
                raise LLMError(
                    f"{self.base_url} did not answer within the {self.settings.deadline_s:g} s deadline "
                    f"(openai.deadline_s) after {attempt + 1} attempts"
                ) from None
            log.warning("retrying %s in %.2fs (attempt %d of %d)", self.base_url, delay, attempt + 2, attempts)
            time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _delay(self, attempt: int, exc: Exception) -> float:
        """Exponential, capped at backoff_max_s, with full jitter in its upper half; Retry-After wins when longer."""
        base = min(self.settings.backoff_s * (2**attempt), self.settings.backoff_max_s)
        delay = base * (0.5 + 0.5 * self._jitter.random())
        response = getattr(exc, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_S))
            except ValueError:
                log.debug("ignoring non-numeric Retry-After header %r", retry_after)
        return delay

    def _parse(self, response: Any, messages: list[ChatMessage]) -> Generation:
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:
            raise LLMResponseError(f"malformed response from {self.base_url}: no choices in {str(response)[:200]!r}")
        choice = choices[0]
        text = choice.message.content or ""
        calls = tuple(
            ToolCall(id=call.id or f"call_{n}", name=call.function.name, arguments=call.function.arguments or "{}")
            for n, call in enumerate(getattr(choice.message, "tool_calls", None) or [])
            if getattr(call, "function", None) is not None and call.function.name
        )
        usage = getattr(response, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            tokens = Usage(usage.prompt_tokens, usage.completion_tokens or 0)
        else:
            # Some compatible servers omit usage; meter an estimate rather than nothing.
            log.warning("%s returned no token usage; metering a whitespace estimate", self.base_url)
            tokens = Usage(sum(count_tokens(m.content) for m in messages), count_tokens(text))
        return Generation(text, tokens, _parse_logprobs(choice), choice.finish_reason, calls)


def _parse_logprobs(choice: Any) -> list[TokenLogprob] | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return [
        TokenLogprob(item.token, item.logprob, {t.token: t.logprob for t in (item.top_logprobs or [])})
        for item in content
    ]


def _label_logprob(top: dict[str, float], label: str) -> float:
    """Best log-probability among top tokens that begin the label word (case-insensitive)."""
    target = label.strip().lower()
    matches = [lp for tok, lp in top.items() if tok.strip() and target.startswith(tok.strip().lower())]
    return max(matches) if matches else -math.inf


def _short(exc: Exception) -> str:
    return str(exc).replace("\n", " ")[:300]
