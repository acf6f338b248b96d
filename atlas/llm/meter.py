"""Every model call is recorded: tokens, seconds and dollars, so a run can ask for totals."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field

from atlas.config import DEFAULT_PRICE_KEY, AtlasSettings, Price
from atlas.llm.types import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRecord:
    model: str
    kind: str  # "chat" or "score"
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cost_usd: float
    cached: bool


@dataclass
class ModelTotals:
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.cached_calls += int(record.cached)
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens
        self.seconds += record.seconds
        self.cost_usd += record.cost_usd


@dataclass
class MeterTotals(ModelTotals):
    by_model: dict[str, ModelTotals] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class PriceTable:
    """Dollars for tokens of a model; local models use the declared local figure."""

    def __init__(self, settings: AtlasSettings) -> None:
        self._settings = settings
        self._warned: set[str] = set()

    def price(self, model: str, is_local: bool) -> Price:
        if is_local:
            return self._settings.local.price
        price = self._settings.price_for(model)
        if price is None:
            fallback = self._settings.prices[DEFAULT_PRICE_KEY]
            if model not in self._warned:
                self._warned.add(model)
                log.warning(
                    "no price for model %r: metering it at prices.default ($%.2f in / $%.2f out per 1M tokens); "
                    "add it under `prices:` in atlas.yaml to meter its real price",
                    model, fallback.input_per_1m, fallback.output_per_1m,
                )
            return fallback
        return price

    def dollars(self, model: str, is_local: bool, usage: Usage) -> float:
        return self.price(model, is_local).dollars(usage.prompt_tokens, usage.completion_tokens)


class Meter:
    """Thread-safe ledger of calls. Share one meter across clients to total a whole run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[CallRecord] = []

    def record(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)

    @property
    def records(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)

    def totals(self) -> MeterTotals:
        totals = MeterTotals()
        for record in self.records:
            totals.add(record)
            totals.by_model.setdefault(record.model, ModelTotals()).add(record)
        return totals

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
