"""How many requests may go upstream: a share of the requests served so far, after a floor."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class UpstreamBudget:
    """At most ``max(floor, floor(share * requests))`` upstream calls after ``requests`` requests.

    The floor lets a new cascade learn from its first answers (with a share of 0.1 and no floor,
    nine of the first ten requests would get an untrained guess). A call counts when it is
    admitted, so concurrent requests cannot overspend, and a failed call still counts."""

    share: float = 1.0
    floor: int = 50
    requests_: int = 0
    upstream_: int = 0
    refused_: int = 0

    def allowance(self) -> int:
        return max(self.floor, math.floor(self.share * self.requests_ + 1e-9))

    def count_request(self) -> None:
        self.requests_ += 1

    def admit(self) -> bool:
        """May one more request go upstream now? Counts it if so, and a refusal if not."""
        if self.upstream_ + 1 <= self.allowance():
            self.upstream_ += 1
            return True
        self.refused_ += 1
        return False

    def state(self) -> dict[str, int]:
        return {"requests_": self.requests_, "upstream_": self.upstream_, "refused_": self.refused_}

    def restore(self, state: dict[str, int]) -> None:
        self.requests_, self.upstream_, self.refused_ = int(state["requests_"]), int(state["upstream_"]), int(state["refused_"])
