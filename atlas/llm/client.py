"""The one object callers use: any backend, plus metering and an optional response cache."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict

from atlas.errors import LLMConfigError, LLMContextOverflow, LLMError
from atlas.llm.backend import Backend
from atlas.llm.cache import ResponseCache, cache_key
from atlas.llm.ledger import current_ledger
from atlas.llm.meter import CallRecord, Meter, PriceTable
from atlas.llm.types import (
    Completion,
    Generation,
    GenerationParams,
    LabelScores,
    MessagesLike,
    TokenLogprob,
    ToolCall,
    Usage,
    as_messages,
)


class LLMClient:
    """Chat and label scoring against one model, every call metered (and cached if asked)."""

    def __init__(
        self,
        backend: Backend,
        prices: PriceTable,
        meter: Meter | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self.backend = backend
        self.prices = prices
        self.meter = meter if meter is not None else Meter()
        self.cache = cache

    @property
    def model(self) -> str:
        return self.backend.model

    @property
    def supports_label_scores(self) -> bool:
        return bool(getattr(self.backend, "can_score_labels", False))

    @property
    def capabilities(self):
        """What the endpoint offers beyond plain text (native tool calls, JSON-schema outputs)."""
        from atlas.llm.capabilities import capabilities_of

        return capabilities_of(self)

    def chat(self, messages: MessagesLike, **params: object) -> Completion:
        """One chat completion. ``params`` are GenerationParams fields (max_tokens, temperature, tools, ...).

        Inside an episode's call ledger the call counts against the episode's cap, and a failure
        (after the backend's retries) is noted there, so that the episode can be marked as failed."""
        msgs = as_messages(messages)
        gen_params = GenerationParams.model_validate(params)
        key = None
        start = time.perf_counter()
        if self.cache is not None:
            payload = {"messages": [m.model_dump() for m in msgs], "params": gen_params.model_dump(by_alias=True)}
            key = cache_key(self.model, "chat", payload)
            hit = self.cache.get(key)
            if hit is not None:
                return self._finish(_generation_from_json(hit), start, cached=True)
        ledger = current_ledger()
        if ledger is not None:
            ledger.admit(self.model)
        try:
            generation = self.backend.generate(msgs, gen_params)
        except (LLMConfigError, LLMContextOverflow):
            raise  # an overflow is not a failure yet: the caller may compact the prompt and retry (it notes one it gives up on)
        except LLMError as error:
            if ledger is not None:
                ledger.record_failure(f"{self.model}: {error}")
            raise
        if key is not None and self.cache is not None:
            self.cache.put(key, self.model, "chat", _generation_to_json(generation))
        return self._finish(generation, start, cached=False)

    def score_labels(self, prompts: Sequence[MessagesLike], labels: Sequence[str]) -> LabelScores:
        """Next-token log-probabilities of each label word after each prompt (batched)."""
        if not self.supports_label_scores:
            raise LLMConfigError(
                f"model {self.model!r} cannot score label words (no next-token log-probabilities); "
                "use a local model, an OpenAI-compatible endpoint with logprobs, or parse chat answers"
            )
        if not labels:
            raise ValueError("labels must not be empty")
        label_tuple = tuple(labels)
        all_msgs = [as_messages(p) for p in prompts]
        rows: list[list[float] | None] = [None] * len(all_msgs)
        keys: list[str | None] = [None] * len(all_msgs)
        if self.cache is not None:
            for i, msgs in enumerate(all_msgs):
                payload = {"messages": [m.model_dump() for m in msgs], "labels": list(label_tuple)}
                key = cache_key(self.model, "score", payload)
                keys[i] = key
                hit = self.cache.get(key)
                if hit is not None:
                    rows[i] = hit["logprobs"]
        todo = [i for i, row in enumerate(rows) if row is None]
        usage = Usage()
        start = time.perf_counter()
        if todo:
            scored, usage = self.backend.score_next_token([all_msgs[i] for i in todo], label_tuple)  # type: ignore[attr-defined]
            for i, row in zip(todo, scored, strict=True):
                rows[i] = row
                todo_key = keys[i]
                if self.cache is not None and todo_key is not None:
                    self.cache.put(todo_key, self.model, "score", {"logprobs": row})
        seconds = time.perf_counter() - start
        cost = self.prices.dollars(self.model, self.backend.is_local, usage)
        self.meter.record(
            CallRecord(self.model, "score", usage.prompt_tokens, 0, seconds, cost, cached=not todo)
        )
        ledger = current_ledger()
        if ledger is not None:
            ledger.charge(self.model, usage.prompt_tokens, 0, cost)
        return LabelScores(label_tuple, [list(r) for r in rows if r is not None], usage, seconds, cost)

    def _finish(self, generation: Generation, start: float, cached: bool) -> Completion:
        seconds = time.perf_counter() - start
        # A cache hit spends nothing: it is recorded with zero tokens and zero dollars.
        spent = Usage() if cached else generation.usage
        cost = self.prices.dollars(self.model, self.backend.is_local, spent)
        self.meter.record(
            CallRecord(
                self.model, "chat", spent.prompt_tokens, spent.completion_tokens, seconds, cost, cached
            )
        )
        ledger = current_ledger()
        if ledger is not None:  # the episode's own share (the meter totals the whole run)
            ledger.charge(self.model, spent.prompt_tokens, spent.completion_tokens, cost)
        return Completion(
            text=generation.text,
            model=self.model,
            usage=generation.usage,
            latency_s=seconds,
            cost_usd=cost,
            logprobs=generation.logprobs,
            finish_reason=generation.finish_reason,
            cached=cached,
            tool_calls=generation.tool_calls,
        )


def _generation_to_json(generation: Generation) -> dict:
    data = asdict(generation)
    data["tool_calls"] = [call.model_dump() for call in generation.tool_calls]
    return data


def _generation_from_json(data: dict) -> Generation:
    logprobs = data.get("logprobs")
    return Generation(
        text=data["text"],
        usage=Usage(**data["usage"]),
        logprobs=[TokenLogprob(**lp) for lp in logprobs] if logprobs is not None else None,
        finish_reason=data.get("finish_reason"),
        tool_calls=tuple(ToolCall(**call) for call in data.get("tool_calls") or ()),
    )
