"""Per-episode accounting of model calls: a hard cap, and a record of calls that failed for good.

A runner opens a ledger around one episode (`with CallLedger(cap).active(): ...`); every
`LLMClient` call made inside it, by any agent and in any thread the work is handed to with the
context copied (LangGraph does that), is counted against the cap and has its failures noted. The
ledger is scoped by a context variable, so concurrent episodes each see their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from threading import Lock

from atlas.errors import AtlasError


class CallCapReached(AtlasError):
    """The episode has made as many model calls as it may: the agent must stop (not a model failure)."""


_ACTIVE: ContextVar[CallLedger | None] = ContextVar("atlas_call_ledger", default=None)


@dataclass
class CallLedger:
    limit: int | None = None
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    cost_usd: float = 0.0  # what this episode's calls cost (a shared meter cannot tell concurrent episodes apart)
    prompt_tokens: dict[str, int] = field(default_factory=dict)  # per model
    completion_tokens: dict[str, int] = field(default_factory=dict)
    _lock: Lock = field(default_factory=Lock, repr=False, compare=False)

    def charge(self, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        """Book a finished call's tokens and dollars to this episode."""
        with self._lock:
            self.cost_usd += cost_usd
            self.prompt_tokens[model] = self.prompt_tokens.get(model, 0) + prompt_tokens
            self.completion_tokens[model] = self.completion_tokens.get(model, 0) + completion_tokens

    @property
    def tokens(self) -> int:
        with self._lock:
            return sum(self.prompt_tokens.values()) + sum(self.completion_tokens.values())

    def admit(self, model: str) -> None:
        """Count one call, or refuse it when the cap is reached."""
        with self._lock:
            if self.limit is not None and self.calls >= self.limit:
                raise CallCapReached(f"the episode reached its cap of {self.limit} model calls (agents.max_llm_calls); {model} was not called")
            self.calls += 1

    def record_failure(self, message: str) -> None:
        with self._lock:
            self.failures.append(message[:300])

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @contextmanager
    def active(self) -> Iterator[CallLedger]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


def current_ledger() -> CallLedger | None:
    """The ledger of the episode being run here, if any."""
    return _ACTIVE.get()
