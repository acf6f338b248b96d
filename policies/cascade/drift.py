"""Drift: watch how often the cascade disagrees with the LLM beyond what its policy expected; a lasting
jump means the stream shifted."""

from __future__ import annotations

from collections import deque


class DisagreementDrift:
    """Watches the disagreement of the labelled items: a rise of the last `window` items' mean by more than
    `margin` is a shift. The caller then raises deferrals for `hold` items, and the detector starts afresh
    so that the new regime becomes normal.

    With the policy's expectation (`expected`, the item's q), each item counts as its disagreement minus
    that chance and the window's mean is compared with zero; without one, the raw rate of the window is
    compared with the rate since the last reset. The labelled items are the policy's choice: when it labels
    more sure items for a while (exploration, a boost) and then fewer, the raw rate jumps on a stream that
    has not changed, and each boost set off the next (seed 0, mu 0.4: six false detections, a fifth of the
    LLM calls spent on the boosts). The excess over the expected chance does not depend on which items were
    labelled."""

    def __init__(self, window: int = 100, margin: float = 0.15, min_items: int = 200, hold: int = 300) -> None:
        if not 0 < margin < 1 or window < 10 or min_items < window:
            raise ValueError("drift needs 0 < margin < 1, window >= 10 and min_items >= window")
        self.window = window
        self.margin = margin
        self.min_items = min_items
        self.hold = hold
        self.detections: list[int] = []
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.total = 0.0
        self.recent: deque[float] = deque(maxlen=self.window)

    def update(self, disagreed: bool, position: int, expected: float | None = None) -> bool:
        """Feed one labelled item and the chance of disagreement the policy expected for it (None: it has no
        estimate); True when a shift is detected at this position."""
        x = (1.0 if disagreed else 0.0) - (expected or 0.0)
        self.n += 1
        self.total += x
        self.recent.append(x)
        if self.n < self.min_items or len(self.recent) < self.window:
            return False
        # with the policy's expectation, it is the reference: excess disagreement is measured from zero (the
        # items' own history lags a level that improves, and would make an ordinary stretch look like a rise)
        reference = 0.0 if expected is not None else (self.total - sum(self.recent)) / (self.n - len(self.recent))
        if sum(self.recent) / len(self.recent) - reference > self.margin:
            self.detections.append(position)
            self.reset()
            return True
        return False
