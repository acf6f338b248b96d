"""The learning memory: pamphlets in SQL (source of truth) with a FAISS index beside them."""

from memory.embed import HashingEmbedder, SentenceTransformerEmbedder, make_embedder
from memory.errors import EmbedderMismatch, ImportValidationError, MemoryStoreError, PamphletNotFound
from memory.schema import Pamphlet, PamphletIn, PamphletVersion, Provenance, SearchHit, TrackRecord
from memory.store import MemoryStore

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
