"""The endpoint's work, apart from HTTP: answer one text (cheap level, or upstream within the
budget), learn from the upstream's labels, count what everything cost, and save or restore the
learned state."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from atlas.config import Price
from atlas.endpoint import state_file
from atlas.endpoint.budget import UpstreamBudget
from atlas.endpoint.cascade_adapter import UPSTREAM_COST, UPSTREAM_LEVEL, CascadeAdapter, Route
from atlas.endpoint.config import EndpointConfig
from atlas.endpoint.protocol import EndpointError
from atlas.endpoint.state_file import StateFileError
from atlas.endpoint.upstream import Upstream

log = logging.getLogger(__name__)


@dataclass
class Totals:
    """Running counts since the state was created (they survive restarts with the state)."""

    requests: int = 0
    by_level: dict[str, int] = field(default_factory=dict)
    upstream_calls: int = 0
    upstream_unparsed: int = 0
    upstream_errors: int = 0
    budget_exhausted: int = 0
    cost_units: float = 0.0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Answer:
    """What one request got, and what it cost (declared units, upstream tokens and dollars)."""

    label: str
    label_index: int
    level: str  # the level whose label is returned: a cheap level's name, or "upstream"
    levels_used: tuple[str, ...]
    confidence: float | None  # the cheap level's top probability (None when the upstream answered)
    cost: float
    cost_usd: float
    upstream: str  # not-asked | answered | unparsed (asked, named no label) | over-budget
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def budget_exhausted(self) -> bool:
        return self.upstream == "over-budget"

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cascade": {
                "level": self.level, "levels_used": list(self.levels_used), "label_index": self.label_index,
                "confidence": self.confidence, "cost": self.cost, "cost_upstream_only": UPSTREAM_COST, "cost_usd": self.cost_usd,
                "upstream": self.upstream, "budget_exhausted": self.budget_exhausted,
            },
        }

    def headers(self) -> dict[str, str]:
        return {"x-cascade-level": self.level, "x-cascade-cost": f"{self.cost:g}", "x-cascade-upstream": self.upstream,
                "x-cascade-budget": "exhausted" if self.budget_exhausted else "ok"}


class CascadeEndpoint:
    """One cascade, its budget and its upstream. Every call runs on the app's event loop; only
    learning runs in a worker thread, on a fork of the cascade that is adopted when it is done."""

    def __init__(self, config: EndpointConfig, adapter: CascadeAdapter, upstream: Upstream, price: Price | None = None) -> None:
        self.config = config
        self.adapter = adapter
        self.upstream = upstream
        self.price = price
        self.budget = UpstreamBudget(share=config.budget, floor=config.budget_floor)
        self.totals = Totals()
        self.dirty = False
        self.saved_at: float | None = None
        self.notices: list[str] = []
        self._pending: list[tuple[str, Route, int]] = []  # upstream labels not yet learned
        self._in_flight = 0  # labels being learned right now
        self._learning: asyncio.Task[None] | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    # ------------------------------------------------------------------ answering
    async def answer(self, text: str, client_messages: list[dict[str, Any]]) -> Answer:
        """The answer to one text; an upstream label is queued for learning."""
        route = self.adapter.route(text)
        self.budget.count_request()
        self.totals.requests += 1
        self.dirty = True
        if not route.wants_upstream:
            return self._count(Answer(self.labels[route.label], route.label, route.level, route.levels_used, route.confidence, route.cost, 0.0, "not-asked"))
        if not self.budget.admit():
            self.totals.budget_exhausted += 1
            return self._count(Answer(self.labels[route.label], route.label, route.level, route.levels_used, route.confidence, route.cost, 0.0, "over-budget"))
        self.totals.upstream_calls += 1
        try:
            reply = await self.upstream.classify(text, client_messages)
        except EndpointError:
            self.totals.upstream_errors += 1
            raise
        cost = route.cost + UPSTREAM_COST
        dollars = self.price.dollars(reply.prompt_tokens, reply.completion_tokens) if self.price else 0.0
        used = route.levels_used + (UPSTREAM_LEVEL,)
        if reply.label is None:  # the upstream named no label: the cheap answer stands, nothing is learned
            self.totals.upstream_unparsed += 1
            answer = Answer(self.labels[route.label], route.label, route.level, used, route.confidence, cost, dollars, "unparsed",
                            reply.prompt_tokens, reply.completion_tokens)
            return self._count(answer)
        label = reply.label
        self._queue(text, route, label)
        return self._count(Answer(self.labels[label], label, UPSTREAM_LEVEL, used, None, cost, dollars, "answered", reply.prompt_tokens, reply.completion_tokens))

    # ------------------------------------------------------------------ learning
    def _queue(self, text: str, route: Route, label: int) -> None:
        self._pending.append((text, route, label))
        if self._learning is None or self._learning.done():
            self._learning = asyncio.get_running_loop().create_task(self._learn_pending())

    async def _learn_pending(self) -> None:
        """Learn every queued label: on a fork, in a worker thread (SGD releases the GIL), then
        adopted on the loop. Labels that arrive meanwhile make the next, larger, step."""
        while self._pending:
            batch, self._pending = self._pending, []
            self._in_flight = len(batch)
            try:
                fork = self.adapter.fork()
                await anyio.to_thread.run_sync(fork.learn_many, batch)
                self.adapter.adopt(fork)
                self.dirty = True
            except Exception:  # a bug in learning must not stop the answering; it is logged, the labels dropped
                log.exception("cascade endpoint: learning from %d upstream labels failed; they were dropped", len(batch))
            finally:
                self._in_flight = 0

    async def drain(self) -> None:
        """Wait until every queued label is learned (before the last save)."""
        while self._learning is not None and not self._learning.done():
            await self._learning
        if self._pending:
            await self._learn_pending()

    @property
    def labels_pending(self) -> int:
        return len(self._pending) + self._in_flight

    def _count(self, answer: Answer) -> Answer:
        t = self.totals
        t.by_level[answer.level] = t.by_level.get(answer.level, 0) + 1
        t.cost_units += answer.cost
        t.cost_usd += answer.cost_usd
        t.prompt_tokens += answer.prompt_tokens
        t.completion_tokens += answer.completion_tokens
        return answer

    def stats(self) -> dict[str, Any]:
        t = self.totals
        return {
            **asdict(t),
            "upstream_share": t.upstream_calls / t.requests if t.requests else 0.0,
            "cost_upstream_only": UPSTREAM_COST * t.requests,
            "labels": list(self.labels), "levels": self.adapter.level_names, "policy": self.config.policy,
            "labels_learned": self.adapter.labels_learned_, "labels_pending": self.labels_pending,
            "budget": {"share": self.budget.share, "floor": self.budget.floor, "allowance": self.budget.allowance(), "used": self.budget.upstream_},
            "upstream": {"base_url": self.config.upstream, "model": self.config.model},
            "state_file": str(self.config.state) if self.config.state else None,
            "saved_at": datetime.fromtimestamp(self.saved_at, UTC).isoformat() if self.saved_at else None,
        }

    # ------------------------------------------------------------------ state
    def snapshot(self) -> bytes:
        """The learned state as bytes (taken on the event loop, so nothing changes while it is taken)."""
        payload = {"identity": self.config.identity(), "provenance": self.config.provenance(), "cascade": self.adapter.state(),
                   "budget": self.budget.state(), "totals": asdict(self.totals), "saved_at": time.time()}
        return state_file.dumps(payload)

    def write(self, blob: bytes, path: Path) -> None:
        state_file.write_atomic(path, blob)
        self.saved_at = time.time()

    def save(self) -> None:
        if self.config.state is not None:
            self.dirty = False
            self.write(self.snapshot(), self.config.state)

    def restore(self) -> bool:
        """Load the state file if there is one; True when something was restored."""
        path = self.config.state
        if path is None:
            return False
        payload = state_file.read(path)
        if payload is None:
            return False
        identity = self.config.identity()
        saved = payload.get("identity")
        if saved != identity:
            raise StateFileError(
                f"state file {path} was learned for {_describe(saved)}; this endpoint is started with {_describe(identity)}. "
                "Start it with the same labels, levels and policy, or pass another --state (nothing was changed)"
            )
        try:
            self.adapter.restore(payload["cascade"])
            self.budget.restore(payload["budget"])
            self.totals = Totals(**payload["totals"])
        except (KeyError, TypeError, ValueError) as error:
            raise StateFileError(f"state file {path} is incomplete ({type(error).__name__}: {error}); move it away or pass another --state") from None
        before = payload.get("provenance") or {}
        for key, now in self.config.provenance().items():
            if before.get(key) != now:
                self.notices.append(f"the state was learned with {key} {before.get(key)!r}; it now learns from {now!r}")
        self.saved_at = float(payload.get("saved_at") or 0.0) or None
        return True


def _describe(identity: Any) -> str:
    if not isinstance(identity, dict):
        return "an unknown cascade"
    return f"labels {','.join(identity.get('labels') or [])}, levels {identity.get('levels')}, policy {identity.get('policy')}"


def open_endpoint(config: EndpointConfig, price: Price | None = None) -> CascadeEndpoint:
    """The endpoint for ``config``, with its state file restored (an unusable file stops here,
    before anything listens)."""
    encoder = None
    if config.levels == "hashed,minilm":
        from memory.embed import make_embedder

        embedder = make_embedder("minilm")
        lock = threading.Lock()  # the loop answers while a worker thread learns: one encode at a time

        def encoder(texts: Sequence[str]) -> np.ndarray:
            with lock:
                return embedder.encode([" ".join(t.split()[:96]) for t in texts])  # as `atlas cascade run`
    adapter = CascadeAdapter(len(config.labels), levels=config.levels, policy=config.policy, threshold=config.threshold, mu=config.mu,
                             seed=config.seed, encoder=encoder, warmup=config.warmup)
    key = config.upstream_key.get_secret_value() if config.upstream_key else None
    upstream = Upstream(config.upstream, config.model, key, config.labels, config.prompt, timeout_s=config.upstream_timeout_s,
                        max_tokens=config.upstream_max_tokens)
    endpoint = CascadeEndpoint(config, adapter, upstream, price)
    endpoint.restore()
    return endpoint
