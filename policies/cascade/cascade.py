"""The online cascade: each item climbs the levels until a policy lets one answer; the LLM's answers
teach the levels below it. Items are handled in small batches, and a batch is always answered before
anything is learned from it: no level ever fits on an item it has not yet answered (no peeking).

Incremental use: `feed(ids, texts)` answers the next items of a stream and returns, per item, the
answer and which level gave it; `save(path)` keeps what the cascade learned (levels, policy, replay,
drift, position) and `OnlineCascade.load(path, llm)` resumes it with an LLM level of the caller's."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policies.cascade.base import DeferralPolicy, Level
from policies.cascade.deferral import uncertainty
from policies.cascade.drift import DisagreementDrift
from policies.cascade.llm_level import LLMLevel
from policies.cascade.replay import ReplayBuffer

SAVE_FORMAT = "atlas-cascade/3"  # 2: the OCL policy keeps a calibration curve per level; 3: the default level keeps latent topics


class CascadeStateError(ValueError):
    """A saved cascade that cannot be loaded: the message says which file and why."""


@dataclass
class ItemOutcome:
    index: int
    id: str
    prediction: int
    answered_by: str
    levels_used: list[str]
    llm_label: int | None = None  # what the LLM said, when it was asked
    llm_unparsed: bool = False
    capped: bool = False  # wanted the LLM but the budget said no

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CascadeRun:
    outcomes: list[ItemOutcome] = field(default_factory=list)
    non_llm_seconds: float = 0.0
    llm_seconds: float = 0.0
    drift_positions: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class FedBatch:
    """What `feed` returns: per item, the answer (a class index) and the level that gave it."""

    outcomes: list[ItemOutcome]
    non_llm_seconds: float = 0.0
    drift_positions: tuple[int, ...] = ()

    @property
    def predictions(self) -> list[int]:
        return [o.prediction for o in self.outcomes]

    @property
    def answered_by(self) -> list[str]:
        return [o.answered_by for o in self.outcomes]


class OnlineCascade:
    def __init__(
        self,
        levels: Sequence[Level],
        llm: LLMLevel,
        policy: DeferralPolicy,
        batch_size: int = 32,
        replay: ReplayBuffer | None = None,
        replay_k: int = 32,
        drift: DisagreementDrift | None = None,
        drift_boost: float = 0.3,
    ) -> None:
        if not levels:
            raise ValueError("a cascade needs at least one level below the LLM")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.levels = list(levels)
        self.llm = llm
        self.policy = policy
        self.batch_size = batch_size
        self.replay = replay if replay is not None else ReplayBuffer()
        self.replay_k = replay_k
        self.drift = drift
        self.drift_boost = drift_boost
        self.position_ = 0  # items answered so far (over every feed and run, and before a save)
        self._hold_until = -1

    # --- incremental API ----------------------------------------------------------------------------
    def feed(self, ids: Sequence[str], texts: Sequence[str]) -> FedBatch:
        """Answer the next items of the stream (in batches of `batch_size`), then learn from them."""
        if len(ids) != len(texts):
            raise ValueError(f"feed needs one id per text: {len(ids)} ids, {len(texts)} texts")
        run = CascadeRun()
        for first in range(0, len(texts), self.batch_size):
            self._batch(run, list(ids[first:first + self.batch_size]), list(texts[first:first + self.batch_size]))
        return FedBatch(run.outcomes, run.non_llm_seconds, tuple(run.drift_positions))

    def observe_unlabelled(self, texts: Sequence[str]) -> int:
        """Unlabelled text from outside the stream (a corpus of the same kind the user holds, never items
        still to come): the levels that learn without labels (`observe`) take it as text seen before the
        next item, so their topics are there from the first label instead of after hundreds of items.
        Returns how many levels took it (0: none learns without labels)."""
        takers = [observe for level in self.levels if (observe := getattr(level, "observe", None)) is not None]
        for observe in takers if len(texts) else []:
            observe(list(texts))
        return len(takers) if len(texts) else 0

    def run(self, ids: Sequence[str], texts: Sequence[str], progress: Callable[[int], None] | None = None) -> CascadeRun:
        """Answer a whole stream; returns the figures of this run only."""
        run = CascadeRun()
        for first in range(0, len(texts), self.batch_size):
            self._batch(run, list(ids[first:first + self.batch_size]), list(texts[first:first + self.batch_size]))
            if progress:
                progress(min(len(texts), first + self.batch_size))
        return run

    # --- save and resume ----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Keep what the cascade learned; the LLM level is the caller's to give again on load.
        The file is a pickle: load only files you wrote."""
        state = {"format": SAVE_FORMAT, "levels": self.levels, "policy": self.policy, "replay": self.replay,
                 "replay_k": self.replay_k, "drift": self.drift, "drift_boost": self.drift_boost, "batch_size": self.batch_size,
                 "position": self.position_, "hold_until": self._hold_until, "llm_name": self.llm.name}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as sink:
            pickle.dump(state, sink, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(path)  # a crash mid-write leaves the previous file whole

    @classmethod
    def load(cls, path: Path, llm: LLMLevel) -> OnlineCascade:
        path = Path(path)
        if not path.is_file():
            raise CascadeStateError(f"{path}: no saved cascade there; save one with OnlineCascade.save")
        try:
            with path.open("rb") as source:
                state = pickle.load(source)
        except (pickle.UnpicklingError, EOFError) as error:
            raise CascadeStateError(f"{path}: not a saved cascade ({error})") from None
        except (AttributeError, ImportError) as error:
            raise CascadeStateError(f"{path}: not a saved cascade, or one saved by an earlier version of atlas whose classes are gone ({error}); "
                                    "run the stream again to learn a new one") from None
        if not isinstance(state, dict) or not str(state.get("format", "")).startswith("atlas-cascade/"):
            raise CascadeStateError(f"{path}: not a saved cascade of format {SAVE_FORMAT}")
        if state["format"] != SAVE_FORMAT:
            raise CascadeStateError(f"{path}: saved in format {state['format']}, this version reads {SAVE_FORMAT}; "
                                    "run the stream again to learn a new one")
        cascade = cls(state["levels"], llm, state["policy"], batch_size=state["batch_size"], replay=state["replay"],
                      replay_k=state["replay_k"], drift=state["drift"], drift_boost=state["drift_boost"])
        cascade.position_ = state["position"]
        cascade._hold_until = state["hold_until"]
        return cascade

    # --- one batch ----------------------------------------------------------------------------------
    def _batch(self, run: CascadeRun, ids: list[str], texts: list[str]) -> None:
        clock = time.perf_counter()
        n = len(texts)
        start = self.position_
        positions = np.arange(start, start + n)
        active = np.arange(n)
        provisional = np.zeros(n, dtype=int)
        answered_by: list[str | None] = [None] * n
        used: list[list[str]] = [[] for _ in range(n)]
        seen_probs: list[tuple[np.ndarray, np.ndarray]] = []
        last_probs: np.ndarray | None = None
        stop_uncertainty = np.ones(n)  # uncertainty of the level each item stopped at
        for number, level in enumerate(self.levels):
            if not len(active):
                break
            probs = level.predict_proba([texts[i] for i in active])
            seen_probs.append((active.copy(), probs))
            for i in active:
                used[i].append(level.name)
            provisional[active] = probs.argmax(axis=1)
            stop_uncertainty[active] = uncertainty(probs)
            defer = np.asarray(self.policy.defer(number, probs, int(positions[active[0]])), dtype=bool)
            for i in active[~defer]:
                answered_by[i] = level.name
            active, last_probs = active[defer], probs[defer]
        prediction = provisional.copy()
        capped = np.zeros(n, dtype=bool)
        if getattr(self.policy, "candidates_from_all_levels", False):
            active = np.arange(n)  # a budget spends its calls wherever the cascade is least sure
            last_probs = None
        asked = active
        if len(active):
            scores = stop_uncertainty[active] if last_probs is None else uncertainty(last_probs)
            allowed = np.asarray(self.policy.admit(scores, positions[active]), dtype=bool)
            for i in active[~allowed]:
                if answered_by[i] is None:  # deferred past every cheap level but over budget
                    answered_by[i] = self.levels[-1].name
                    capped[i] = True
            asked = active[allowed]
        run.non_llm_seconds += time.perf_counter() - clock
        clock = time.perf_counter()
        answers = self.llm.ask([ids[i] for i in asked], [texts[i] for i in asked])
        run.llm_seconds += time.perf_counter() - clock
        clock = time.perf_counter()
        llm_label: dict[int, int | None] = {}
        for k, item in enumerate(asked.tolist()):
            label = answers.labels[k]
            llm_label[item] = label
            used[item].append(self.llm.name)
            answered_by[item] = self.llm.name
            if label is not None:
                prediction[item] = label
        for level in self.levels:  # the batch is answered: a level may now learn from its texts without labels
            observe = getattr(level, "observe", None)
            if observe is not None:
                observe(texts)
        self._learn(run, texts, positions, provisional, seen_probs, {i: y for i, y in llm_label.items() if y is not None})
        for row in range(n):
            run.outcomes.append(ItemOutcome(
                int(positions[row]), ids[row], int(prediction[row]), answered_by[row] or self.levels[-1].name, used[row],
                llm_label.get(row), row in llm_label and llm_label[row] is None, bool(capped[row]),
            ))
        self.position_ += n
        run.non_llm_seconds += time.perf_counter() - clock

    def _learn(self, run: CascadeRun, texts: list[str], positions: np.ndarray, provisional: np.ndarray,
               seen_probs: list[tuple[np.ndarray, np.ndarray]], labels: dict[int, int]) -> None:
        """Imitation: every LLM label trains every level below it (with replay); policies learn too."""
        if labels:
            # the policy's chance that the last level an item reached disagrees with the LLM, read before it learns (for drift)
            estimate = getattr(self.policy, "expected_disagreement", None) if self.drift is not None else None
            expected: dict[int, float] = {}
            for number, (members, probs) in enumerate(seen_probs):
                rows = [k for k, i in enumerate(members) if i in labels]
                if rows:
                    if estimate is not None:  # later levels overwrite: the last one reached
                        expected.update(zip((int(members[k]) for k in rows), np.asarray(estimate(number, probs[rows]), dtype=float).tolist()))
                    truth = np.array([labels[members[k]] for k in rows])
                    self.policy.learn(number, probs[rows], probs[rows].argmax(axis=1) != truth, int(positions[0]))
            if self.drift is not None:
                for i, label in sorted(labels.items()):
                    if self.drift.update(bool(provisional[i] != label), int(positions[i]), expected.get(i)):
                        run.drift_positions.append(int(positions[i]))
                        self._hold_until = int(positions[i]) + self.drift.hold
                        self.policy.boost(self.drift_boost)
            fresh = [(texts[i], label) for i, label in sorted(labels.items())]
            replayed = fresh + self.replay.sample(self.replay_k)
            for level in self.levels:
                batch = fresh if getattr(level, "keeps_history", False) else replayed
                level.partial_fit([t for t, _ in batch], [y for _, y in batch])
            for text, label in fresh:
                self.replay.add(text, label)
        if self._hold_until >= 0 and positions[-1] > self._hold_until:
            self.policy.boost(0.0)
            self._hold_until = -1
        keep = [text for text, _ in self.replay.items]
        for level in self.levels:
            forget = getattr(level, "forget", None)
            if forget is not None:
                forget(keep)  # cached features of texts no longer replayed are dropped
