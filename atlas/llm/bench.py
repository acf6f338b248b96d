"""`atlas llm bench`: generation speed and batched label-scoring speed and accuracy."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from atlas.llm.classify import CALIBRATIONS, ZeroShotClassifier
from atlas.llm.client import LLMClient

GENERATION_PROMPTS = (
    "Explain in two sentences what a security alert is.",
    "List three things an analyst checks after a suspicious sign-in.",
    "Write one sentence about why caching saves money.",
)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: int


def bench_generation(client: LLMClient, max_tokens: int = 64) -> dict[str, float]:
    """Tokens per second of greedy generation, summed over a few prompts."""
    client.chat("Say hi.", max_tokens=4)  # warm-up: first call pays one-off costs
    tokens, seconds = 0, 0.0
    for prompt in GENERATION_PROMPTS:
        completion = client.chat(prompt, max_tokens=max_tokens)
        tokens += completion.usage.completion_tokens
        seconds += completion.latency_s
    return {"generated_tokens": tokens, "generation_s": seconds, "tokens_per_s": tokens / seconds}


def bench_label_scoring(
    classifier: ZeroShotClassifier,
    items: Sequence[LabelledText],
    chunk: int = 40,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Items per second of batched label scoring, with accuracy under each calibration."""
    gold = np.array([item.label for item in items])
    meter = classifier.client.meter
    raw_parts, seconds, prompt_tokens = [], 0.0, 0
    for start in range(0, len(items), chunk):
        texts = [item.text for item in items[start : start + chunk]]
        before = meter.totals().prompt_tokens
        began = time.perf_counter()
        raw_parts.append(classifier.raw_proba(texts))
        seconds += time.perf_counter() - began
        prompt_tokens += meter.totals().prompt_tokens - before
        if progress is not None:
            progress(len(texts))
    raw = np.concatenate(raw_parts)
    classifier.fit_calibration()
    accuracy = {}
    for mode in CALIBRATIONS:
        # each mode from a fresh state, items in stream order
        fresh = ZeroShotClassifier(classifier.client, classifier.prompt, mode)
        fresh.content_free_ = classifier.content_free_
        accuracy[mode] = float((fresh.calibrate(raw).argmax(axis=1) == gold).mean())
    return {
        "n_items": len(items),
        "scoring_s": seconds,
        "items_per_s": len(items) / seconds,
        "mean_prompt_tokens": prompt_tokens / len(items),
        "accuracy": accuracy["none"],
        "accuracy_by_calibration": accuracy,
        "content_free_probs": [float(p) for p in classifier.content_free_],  # type: ignore[union-attr]
        "predicted_positive_share": float(raw.argmax(axis=1).mean()),
    }


def machine_info() -> dict[str, object]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }
