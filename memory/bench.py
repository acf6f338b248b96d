"""`atlas memory bench`: time the store itself at size N with precomputed vectors.

Vectors are clustered random unit vectors (like sentence embeddings: many near neighbours), so
the store, not the embedder, is timed; one figure (``embed_search_p50_ms``) adds the real MiniLM
embedder in front of search."""

from __future__ import annotations

import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from memory.embed import make_embedder
from memory.store import MemoryStore

TAGS = ("signin", "phishing", "malware", "exfiltration", "oauth", "ransomware", "spray", "lateral")
QUERY_TEXTS = (
    "which account signed in from the new country",
    "find the inbox rule created after the phishing email",
    "what file hash did the malware drop on the device",
    "which IP address received the exfiltrated data",
)


def clustered_vectors(n: int, dim: int, rng: np.random.Generator, clusters: int = 500) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _percentiles_ms(samples: list[float]) -> tuple[float, float]:
    array = np.asarray(samples) * 1e3
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bench(
    n: int, out: Path, index: str = "flat", queries: int = 1000, seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict:
    rng = np.random.default_rng(seed)
    embedder = make_embedder("minilm")
    folder = out / "bench-store"
    shutil.rmtree(folder, ignore_errors=True)
    path = folder / "memory.sqlite"
    vectors = clustered_vectors(n, embedder.dim, rng)
    audiences = np.where(rng.random(n) < 0.8, "student", "teacher")
    items = [
        {"text": f"pamphlet {i}: guidance for {TAGS[i % len(TAGS)]} investigations", "audience": str(audiences[i]), "tags": [TAGS[i % len(TAGS)]]}
        for i in range(n)
    ]

    store = MemoryStore.open(path, embedder=embedder, index_kind=index)  # type: ignore[arg-type]
    began = time.perf_counter()
    store.add_many(items, vectors=vectors, changed_by="bench", progress=progress)
    add_s = time.perf_counter() - began
    store.close()

    began = time.perf_counter()
    store = MemoryStore.open(path, embedder=embedder)
    open_s = time.perf_counter() - began

    query_vectors = vectors[rng.integers(0, n, queries)] + 0.3 * rng.standard_normal((queries, embedder.dim)).astype(np.float32)
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    student = audiences == "student"
    timings, found = [], []
    for q in query_vectors:  # timed alone: no other work between searches to evict caches
        began = time.perf_counter()
        hits = store.search_vector(q, k=10, audience="student")
        timings.append(time.perf_counter() - began)
        found.append({h.pamphlet.id for h in hits})
    student_ids = np.flatnonzero(student) + 1  # ids start at 1, in insertion order
    student_vectors = vectors[student]
    recalls = []
    for start in range(0, queries, 64):  # exact top-10 among the same filtered pamphlets
        scores = query_vectors[start : start + 64] @ student_vectors.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        for row, got in zip(top, found[start : start + 64]):
            recalls.append(len(set(student_ids[row].tolist()) & got) / 10)
    search_p50, search_p99 = _percentiles_ms(timings)

    text_timings = []
    for i in range(max(20, queries // 10)):
        began = time.perf_counter()
        store.search(QUERY_TEXTS[i % len(QUERY_TEXTS)] + f" #{i}", k=10, audience="student")
        text_timings.append(time.perf_counter() - began)
    embed_p50, _ = _percentiles_ms(text_timings)
    rss = _rss_mb()
    store.close()
    return {
        "n": n,
        "dim": embedder.dim,
        "index": index,
        "add_per_s": n / add_s,
        "search_p50_ms": search_p50,
        "search_p99_ms": search_p99,
        "open_s": open_s,
        "recall_at_10": float(np.mean(recalls)),
        "rss_mb": rss,
        "embed_search_p50_ms": embed_p50,
        "queries": queries,
        "filter": "audience=student (80% of pamphlets)",
        "db_mb": path.stat().st_size / 2**20,
        "index_mb": store.index_path.stat().st_size / 2**20,
        "seed": seed,
    }
