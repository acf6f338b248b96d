"""`atlas memory bench`: time the store itself at size N.

Two kinds of vectors: ``text`` (real MiniLM embeddings of IMDB review sentences, embedded once and
cached; queries are held-out sentences) or ``vectors`` (clustered random unit vectors, a harder
case for approximate search). Search is timed through the store (audience filter, k = 10) and,
in the same run, as a bare FAISS search on the same index and queries (called directly, and on one
OpenMP thread): the store's p50 over the faster of the two is its overhead. Text queries (embed + search) use real query texts.
Resident memory is measured in a fresh process that opens the store and runs every query (``rss_mb``; its private and
file-backed parts beside it), since the bench's own process also holds what it generated.
"""

from __future__ import annotations

import gc
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from memory.bench_corpus import corpus, embedded
from memory.embed import make_embedder
from memory.index import one_thread_search
from memory.store import MemoryStore

TAGS = ("signin", "phishing", "malware", "exfiltration", "oauth", "ransomware", "spray", "lateral")
QUERY_TEXTS = (
    "which account signed in from the new country",
    "find the inbox rule created after the phishing email",
    "what file hash did the malware drop on the device",
    "which IP address received the exfiltrated data",
)
MODES = ("text", "vectors")


def clustered_vectors(n: int, dim: int, rng: np.random.Generator, clusters: int = 500) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _percentiles_ms(samples: list[float]) -> tuple[float, float]:
    array = np.asarray(samples) * 1e3
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


def _rss_parts_mb() -> dict[str, float]:
    """This process's resident memory: all of it, the private (anonymous) part, and the file-backed part
    (memory-mapped index pages and libraries, which the kernel can drop and re-read)."""
    fields = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in Path("/proc/self/status").read_text().splitlines()
              if line.startswith(("VmRSS:", "RssAnon:", "RssFile:"))}
    return {"rss_mb": fields.get("VmRSS", 0.0), "rss_private_mb": fields.get("RssAnon", 0.0), "rss_file_mb": fields.get("RssFile", 0.0)}


def _rss_mb() -> float:
    if Path("/proc/self/status").exists():
        return _rss_parts_mb()["rss_mb"]
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, where /proc is missing


def fresh_process_figures(path: str, embedder_spec: str, queries: np.ndarray, connection: Any) -> None:
    """In a new process: open the store, search every query, and send back open time and resident memory, which is
    what a user's process holds (the bench's own process also holds the generated vectors and PyTorch)."""
    embedder = make_embedder(embedder_spec)
    began = time.perf_counter()
    store = MemoryStore.open(path, embedder=embedder, create=False)
    open_s = time.perf_counter() - began
    for q in queries:
        store.search_vector(q, k=10, audience="student")
    store.search(QUERY_TEXTS[0], k=10, audience="student")
    figures = {"open_s": open_s, **_rss_parts_mb()}
    store.close()
    connection.send(figures)


def _in_a_fresh_process(path: Path, embedder_spec: str, queries: np.ndarray) -> dict[str, float]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # nothing of this process is inherited
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=fresh_process_figures, args=(str(path), embedder_spec, queries, send))
    process.start()
    send.close()
    try:
        return receive.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"the process that opens {path} to measure it exited with code {process.exitcode} before reporting") from None
    finally:
        process.join()


def _timed(fn: Callable[[np.ndarray], Any], queries: np.ndarray) -> tuple[list[float], list[Any]]:
    timings: list[float] = []
    results: list[Any] = []
    for q in queries:  # timed alone: no other work between searches to evict caches
        began = time.perf_counter()
        results.append(fn(q))
        timings.append(time.perf_counter() - began)
    return timings, results


def run_bench(
    n: int, out: Path, index: str = "auto", queries: int = 1000, seed: int = 0, mode: str = "text",
    cache: Path | None = None, progress: Callable[[int], None] | None = None,
) -> dict:
    if mode not in MODES:
        raise ValueError(f"unknown bench mode {mode!r}; expected one of {', '.join(MODES)}")
    rng = np.random.default_rng(seed)
    embedder = make_embedder("minilm")
    folder = out / "bench-store"
    shutil.rmtree(folder, ignore_errors=True)
    path = folder / "memory.sqlite"
    if mode == "text":
        texts, query_texts = corpus(n, queries, seed)
        cache = cache or out / "embedding-cache"
        vectors = embedded(texts, embedder, cache, f"imdb-s{seed}", progress)
        query_vectors = embedded(query_texts, embedder, cache, f"imdb-queries-s{seed}")
    else:
        texts = [f"pamphlet {i}: guidance for {TAGS[i % len(TAGS)]} investigations" for i in range(n)]
        vectors = clustered_vectors(n, embedder.dim, rng)
        query_vectors = vectors[rng.integers(0, n, queries)] + 0.3 * rng.standard_normal((queries, embedder.dim)).astype(np.float32)
        query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
        query_texts = [QUERY_TEXTS[i % len(QUERY_TEXTS)] + f" #{i}" for i in range(queries)]
    audiences = np.where(rng.random(n) < 0.8, "student", "teacher")
    items = [{"text": text, "audience": str(audiences[i]), "tags": [TAGS[i % len(TAGS)]]} for i, text in enumerate(texts)]

    store = MemoryStore.open(path, embedder=embedder, index_kind=index)
    began = time.perf_counter()
    store.add_many(items, vectors=vectors, changed_by="bench", progress=progress if mode == "vectors" else None)
    add_s = time.perf_counter() - began
    store.close()
    del store, items
    gc.collect()

    rss_before_open = _rss_mb()
    began = time.perf_counter()
    store = MemoryStore.open(path, embedder=embedder)
    open_s = time.perf_counter() - began
    faiss_index: Any = store._index._index

    raw_timings, _ = _timed(lambda q: faiss_index.search(q.reshape(1, -1), 10), query_vectors)
    timings, found = _timed(lambda q: {h.pamphlet.id for h in store.search_vector(q, k=10, audience="student")}, query_vectors)
    raw_again, _ = _timed(lambda q: faiss_index.search(q.reshape(1, -1), 10), query_vectors)  # the machine may drift: both sides
    one_thread, _ = _timed(lambda q: one_thread_search(faiss_index, q.reshape(1, -1), 10), query_vectors)

    student_ids = np.flatnonzero(audiences == "student") + 1  # ids start at 1, in insertion order
    student_vectors = vectors[audiences == "student"]
    recalls = []
    for start in range(0, len(query_vectors), 64):  # exact top-10 among the same filtered pamphlets
        scores = query_vectors[start : start + 64] @ student_vectors.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        for row, got in zip(top, found[start : start + 64]):
            recalls.append(len(set(student_ids[row].tolist()) & set(got)) / 10)
    search_p50, search_p99 = _percentiles_ms(timings)
    raw_p50, raw_p99 = _percentiles_ms(raw_timings + raw_again)
    one_p50, one_p99 = _percentiles_ms(one_thread)
    best_p50 = min(raw_p50, one_p50)  # the denominator: bare FAISS at its fastest threading, same index and queries

    text_timings, embed_timings = [], []
    for i in range(max(20, len(query_texts) // 5)):
        text = query_texts[i % len(query_texts)] + ("" if i < len(query_texts) else f" #{i}")
        began = time.perf_counter()
        store.search(text, k=10, audience="student")
        text_timings.append(time.perf_counter() - began)
        began = time.perf_counter()
        embedder.encode([text + " (again, uncached)"])
        embed_timings.append(time.perf_counter() - began)
    embed_p50, _ = _percentiles_ms(text_timings)
    embed_only_p50, _ = _percentiles_ms(embed_timings)
    torch_timings = []
    for i in range(20):  # the PyTorch path a query would take without the ONNX export, for the ratio
        began = time.perf_counter()
        cast(Any, embedder)._model.encode(  # the PyTorch module behind the ONNX path
            [f"{query_texts[i % len(query_texts)]} torch #{i}"], normalize_embeddings=True)
        torch_timings.append(time.perf_counter() - began)
    torch_p50, _ = _percentiles_ms(torch_timings)
    rss = _rss_mb()
    kind = store._index.kind
    store.close()
    fresh = _in_a_fresh_process(path, "minilm", query_vectors)
    return {
        "n": n,
        "mode": mode,
        "dim": embedder.dim,
        "index": index,
        "index_kind": kind,
        "add_per_s": n / add_s,
        "search_p50_ms": search_p50,
        "search_p99_ms": search_p99,
        "faiss_p50_ms": raw_p50,
        "faiss_p99_ms": raw_p99,
        "faiss_one_thread_p50_ms": one_p50,
        "faiss_one_thread_p99_ms": one_p99,
        "overhead_x": search_p50 / best_p50,
        "open_s": open_s,
        "recall_at_10": float(np.mean(recalls)),
        "rss_mb": fresh["rss_mb"],  # a fresh process that opened the store and ran every query
        "rss_private_mb": fresh["rss_private_mb"],
        "rss_file_mb": fresh["rss_file_mb"],
        "fresh_open_s": fresh["open_s"],
        "bench_process_rss_mb": rss,  # this process: also the generated vectors, the cache and PyTorch
        "rss_before_open_mb": rss_before_open,
        "embed_search_p50_ms": embed_p50,
        "embed_p50_ms": embed_only_p50,
        "embed_torch_p50_ms": torch_p50,
        "query_backend": getattr(embedder, "query_backend", "torch"),
        "queries": len(query_vectors),
        "filter": "audience=student (80% of pamphlets)",
        "db_mb": path.stat().st_size / 2**20,
        "index_mb": store.index_path.stat().st_size / 2**20,
        "seed": seed,
    }
