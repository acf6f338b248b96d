"""The text domain-incremental scenario: IMDB reviews, then Rotten Tomatoes snippets, both as frozen
sentence vectors. Encoding long reviews is the slow part (tens of ms each on a CPU), so the vectors
of a fixed pool of reviews are cached on disk per encoder; seeds re-split the pool."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from benchmarks.continual.scenarios import TEST_FRACTION, Scenario, ScenarioError, Task, check_scenario
from benchmarks.streams.items import load_stream

DOMAINS = ("imdb", "rotten_tomatoes")
POOL_SEED = 0  # which reviews form the pool; the run's seed only changes the split


def domain_vectors(domain: str, per_domain: int, encode: Callable[[Sequence[str]], np.ndarray], encoder_name: str,
                   cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, labels) of the first ``per_domain`` reviews of a domain, cached under ``cache_dir``."""
    items = load_stream(domain, per_domain, POOL_SEED).items
    labels = np.array([item.label for item in items], dtype=np.int64)
    key = hashlib.sha256("\n".join(item.id for item in items).encode()).hexdigest()[:16]
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_name)
    cache = cache_dir / f"{domain}-{safe_name}-{len(items)}-{key}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        vectors = np.load(cache)
        if len(vectors) == len(items):
            return vectors, labels
    vectors = np.asarray(encode([item.text for item in items]), dtype=np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".partial.npy")
        np.save(partial, vectors)
        partial.replace(cache)  # a cut-short run never leaves a half-written cache behind
    return vectors, labels


def text_domains(pools: Sequence[tuple[np.ndarray, np.ndarray]], seed: int = 0, protocol: str = "domain-il") -> Scenario:
    """One task per domain (in the order given), each split into train and test by ``seed``."""
    protocol = check_scenario("text-domains", protocol)
    if len(pools) != len(DOMAINS):
        raise ScenarioError(f"text-domains needs one pool per domain ({', '.join(DOMAINS)}), got {len(pools)}")
    tasks = []
    for task_id, (domain, (vectors, labels)) in enumerate(zip(DOMAINS, pools)):
        if len(np.unique(labels)) < 2 or np.bincount(labels).min() < 2:
            raise ScenarioError(f"text-domains: the {domain} pool needs at least 2 reviews of each label; use a larger --per-domain")
        X_train, X_test, y_train, y_test = train_test_split(vectors, labels, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
        tasks.append(Task(task_id, domain, (0, 1), X_train, y_train, X_test, y_test))
    return Scenario("text-domains", protocol, tuple(tasks), pools[0][0].shape[1], 2)
