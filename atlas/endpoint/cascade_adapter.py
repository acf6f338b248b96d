"""The endpoint's one contact with the cascade: one item at a time, in two steps.

``route`` climbs the cheap levels for one text and says who would answer (or that the item wants
the upstream model); ``learn_many`` takes the upstream's labels for routed items and teaches every
level (with replay) and the deferral policy, as ``OnlineCascade`` does for the items its LLM
labelled. Learning is slow next to answering (an SGD step over 2**18 hashed features takes tens of
milliseconds), so a server learns on a ``fork`` in a worker thread and then ``adopt``s it, while
the live adapter keeps answering. ``state``/``restore`` carry the learned parts (never the
encoder) for the state file.

Today's ``OnlineCascade`` answers whole batches and calls its LLM synchronously in the middle, which
a server with concurrent upstream calls cannot use; this adapter composes the same parts (levels,
policy, replay) per item instead. It is the module to re-point at the cascade's incremental API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import copy

import numpy as np
import sklearn

from policies.cascade.deferral import OCLPolicy, ThresholdPolicy
from policies.cascade.hashed_text import HashedTextLevel
from policies.cascade.replay import ReplayBuffer

UPSTREAM_COST = 100.0  # declared units, as the cascade's LLM level
UPSTREAM_LEVEL = "upstream"
REPLAY_PER_LABEL = 8  # earlier upstream answers mixed into each update, per fresh label
REPLAY_MAX = 32  # at most this many per update (the stream cascade's replay_k)


@dataclass(frozen=True)
class Route:
    """Where one text stopped. ``label`` is the cheap answer (the last level's, if all deferred)."""

    position: int
    label: int
    confidence: float
    level: str
    levels_used: tuple[str, ...]
    cost: float
    wants_upstream: bool
    seen: tuple[np.ndarray, ...]  # each level's class probabilities (1 x classes), for the policy's learning


class CascadeAdapter:
    """Cheap levels and a deferral policy in front of an upstream model, one request at a time."""

    def __init__(self, classes: int, levels: str = "hashed", policy: str = "threshold", threshold: float = 0.8,
                 mu: float = 5.0, seed: int = 0, encoder: Callable[[Sequence[str]], np.ndarray] | None = None, warmup: int = 50) -> None:
        self.classes = classes
        self.warmup = warmup  # upstream labels learned before any cheap level may answer (a young model is confidently wrong)
        self.levels: list[Any] = [HashedTextLevel(classes=classes, seed=seed)]
        if levels == "hashed,minilm":
            from policies.cascade.embedding import EmbeddingLevel

            if encoder is None:
                raise ValueError("the minilm level needs an encoder")
            self.levels.append(EmbeddingLevel(encoder, classes=classes, seed=seed))
        costs = [level.cost for level in self.levels] + [UPSTREAM_COST]
        self.policy: Any = OCLPolicy(len(self.levels), costs, mu=mu, seed=seed) if policy == "ocl" else ThresholdPolicy(float(threshold))
        self.replay = ReplayBuffer(seed=seed)
        self.routed_ = 0  # items routed so far: the stream position of the next one
        self.labels_learned_ = 0

    @property
    def level_names(self) -> list[str]:
        return [level.name for level in self.levels]

    def route(self, text: str) -> Route:
        position = self.routed_
        self.routed_ += 1
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):  # a third less time per request
            return self._route(text, position)

    def _route(self, text: str, position: int) -> Route:
        seen, used, cost = [], [], 0.0
        probs = np.full((1, self.classes), 1.0 / self.classes)
        for number, level in enumerate(self.levels):
            probs = level.predict_proba([text])
            seen.append(probs)
            used.append(level.name)
            cost += level.cost
            if not bool(self.policy.defer(number, probs, position)[0]) and self.labels_learned_ >= self.warmup:
                return Route(position, int(probs[0].argmax()), float(probs[0].max()), level.name, tuple(used), cost, False, tuple(seen))
        return Route(position, int(probs[0].argmax()), float(probs[0].max()), self.levels[-1].name, tuple(used), cost, True, tuple(seen))

    def learn_many(self, items: Sequence[tuple[str, Route, int]]) -> None:
        """The upstream said ``label`` for each (text, route, label): the policy learns where each
        level was wrong, and every level takes one SGD step on the fresh labels with a sample of
        earlier ones."""
        for _, _, label in items:
            if not 0 <= label < self.classes:
                raise ValueError(f"label {label} is outside 0..{self.classes - 1}")
        if not items:
            return
        for _, route, label in items:
            for number, probs in enumerate(route.seen):
                self.policy.learn(number, probs, probs.argmax(axis=1) != label, route.position)
        fresh = [(text, label) for text, _, label in items]
        batch = fresh + self.replay.sample(min(REPLAY_MAX, REPLAY_PER_LABEL * len(fresh)))
        for level in self.levels:
            level.partial_fit([t for t, _ in batch], [y for _, y in batch])
        for text, label in fresh:
            self.replay.add(text, label)
        self.labels_learned_ += len(fresh)
        for level in self.levels:
            forget = getattr(level, "forget", None)
            if forget is not None and len(getattr(level, "_vectors", ())) > 4 * self.replay.size:
                forget([t for t, _ in self.replay.items])  # the vector cache keeps what replay may ask for

    def learn(self, text: str, route: Route, label: int) -> None:
        self.learn_many([(text, route, label)])

    def fork(self) -> CascadeAdapter:
        """A copy whose learning leaves this adapter untouched (the encoder and vectorizer are shared: they hold no learned state)."""
        other = copy.copy(self)
        other.levels = []
        for level in self.levels:
            clone = copy.copy(level)
            clone.model_ = copy.deepcopy(level.model_)
            if hasattr(level, "_vectors"):
                clone._vectors = dict(level._vectors)
            other.levels.append(clone)
        other.policy = copy.deepcopy(self.policy)
        other.replay = copy.deepcopy(self.replay)
        return other

    def adopt(self, learned: CascadeAdapter) -> None:
        """Take what a fork learned. The routing count stays this adapter's (it kept answering)."""
        self.levels, self.policy, self.replay, self.labels_learned_ = learned.levels, learned.policy, learned.replay, learned.labels_learned_

    def state(self) -> dict[str, Any]:
        """The learned parts, picklable (no encoder, no cached vectors)."""
        return {
            "levels": {level.name: {"model_": level.model_, "n_seen_": level.n_seen_} for level in self.levels},
            "policy": self.policy,
            "replay": self.replay,
            "routed_": self.routed_,
            "labels_learned_": self.labels_learned_,
        }

    def restore(self, state: dict[str, Any]) -> None:
        missing = set(self.level_names) - set(state["levels"])
        if missing:
            raise ValueError(f"the saved state has no level {', '.join(sorted(missing))}")
        for level in self.levels:
            saved = state["levels"][level.name]
            level.model_, level.n_seen_ = saved["model_"], int(saved["n_seen_"])
        if type(state["policy"]) is not type(self.policy):
            raise ValueError(f"the saved state holds a {type(state['policy']).__name__}, not a {type(self.policy).__name__}")
        self.policy = state["policy"]
        self.replay = state["replay"]
        self.routed_ = int(state["routed_"])
        self.labels_learned_ = int(state["labels_learned_"])
