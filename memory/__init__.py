"""The learning memory: pamphlets in SQL (source of truth) with a FAISS index beside them."""

# Names resolve on first use (PEP 562), so importing one submodule does not load them all: the CLI starts fast.
from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "EmbedderMismatch": "memory.errors",
    "HashingEmbedder": "memory.embed",
    "ImportValidationError": "memory.errors",
    "MemoryStore": "memory.store",
    "MemoryStoreError": "memory.errors",
    "Pamphlet": "memory.schema",
    "PamphletIn": "memory.schema",
    "PamphletNotFound": "memory.errors",
    "PamphletVersion": "memory.schema",
    "Provenance": "memory.schema",
    "SearchHit": "memory.schema",
    "SentenceTransformerEmbedder": "memory.embed",
    "TrackRecord": "memory.schema",
    "make_embedder": "memory.embed",
}

__all__ = [
    "EmbedderMismatch",
    "HashingEmbedder",
    "ImportValidationError",
    "MemoryStore",
    "MemoryStoreError",
    "Pamphlet",
    "PamphletIn",
    "PamphletNotFound",
    "PamphletVersion",
    "Provenance",
    "SearchHit",
    "SentenceTransformerEmbedder",
    "TrackRecord",
    "make_embedder",
]

if TYPE_CHECKING:
    from memory.embed import HashingEmbedder, SentenceTransformerEmbedder, make_embedder
    from memory.errors import EmbedderMismatch, ImportValidationError, MemoryStoreError, PamphletNotFound
    from memory.schema import Pamphlet, PamphletIn, PamphletVersion, Provenance, SearchHit, TrackRecord
    from memory.store import MemoryStore


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
