"""A fast path for short texts (search queries): the sentence-transformers model exported once to
ONNX and run by onnxruntime on one thread.

Eager PyTorch spends most of a one-query embedding on per-operator overhead, and its thread
count is a process-wide setting (two threads on a loaded 2-core machine made a query ~10x slower
than one). An ONNX Runtime session has its own thread pool, so queries run on one thread without
touching anyone else's settings. The export is made from the installed weights (nothing is
downloaded), cached by content, and checked against the PyTorch model before it is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
TOLERANCE = 1e-5  # largest allowed difference from the PyTorch vectors, per component (measured: 1.4e-7)
PROBES = ("a suspicious sign-in from a new country", "x", "which account received the phishing email " * 40)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "atlas" / "onnx"


def mean_pooled(model_dir: Path) -> bool:
    """Whether a sentence-transformers folder is Transformer -> mean pooling -> Normalize (what we export)."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
    except (OSError, ValueError, KeyError, IndexError):
        return False
    return kinds == ["Transformer", "Pooling", "Normalize"] and pooling.get("pooling_mode_mean_tokens") is True and not any(
        pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
    )


class OnnxEncoder:
    """Unit vectors for a few texts at a time from an ONNX export of a SentenceTransformer.

    ``model`` gives the SentenceTransformer when asked: it is needed only to export the model and to
    check the export once; the check leaves a marker beside the export, so later processes that find
    both never load PyTorch."""

    def __init__(self, model: Callable[[], Any], model_dir: Path, max_length: int, cache_dir: Path | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.max_length = max_length
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_length)
        self._tokenizer.enable_padding()
        self.path = self._export(model, model_dir, cache_dir or default_cache_dir())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting on a shared CPU
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        checked = self.path.with_name(self.path.name + ".checked")
        if not checked.is_file():
            self._check(model())
            checked.write_text(f"max difference from PyTorch within {TOLERANCE:.0e} on {len(PROBES)} probes\n")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        return np.ascontiguousarray(self._session.run(None, feeds)[0], dtype=np.float32)

    def _check(self, model: Any) -> None:
        expected = model.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True)
        got = np.concatenate([self.encode([p]) for p in PROBES])
        worst = float(np.abs(got - expected).max())
        if worst > TOLERANCE:
            raise ValueError(f"ONNX export {self.path} differs from the model by {worst:.2e} (> {TOLERANCE:.0e})")

    def _export(self, model: Callable[[], Any], model_dir: Path, cache_dir: Path) -> Path:
        digest = hashlib.sha256()
        for name in ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json"):
            if (model_dir / name).is_file():
                digest.update(name.encode() + (model_dir / name).read_bytes())
        # versions from the installed metadata: finding a cached export must not import torch
        digest.update(f"{version('torch')}/{version('onnxruntime')}/{self.max_length}".encode())
        path = cache_dir / f"{model_dir.name}-{digest.hexdigest()[:16]}.onnx"
        if path.is_file():
            return path
        import torch

        st_model = model()
        cache_dir.mkdir(parents=True, exist_ok=True)
        log.info("exporting %s to ONNX once (%s)", model_dir, path)
        module = _MeanPooled(st_model[0].auto_model).eval()
        example = st_model.tokenizer(["an example", "a longer example sentence"], return_tensors="pt", padding=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        axes = {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "token_type_ids")}
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes about Python control flow in the model: expected
                torch.onnx.export(
                    module, (example["input_ids"], example["attention_mask"], example["token_type_ids"]), str(tmp),
                    input_names=list(axes), output_names=["embedding"], dynamic_axes={**axes, "embedding": {0: "batch"}},
                    opset_version=17, dynamo=False,
                )
            path.with_name(path.name + ".checked").unlink(missing_ok=True)  # a new export is checked again
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def _mean_pooled_module() -> type:
    import torch

    class MeanPooled(torch.nn.Module):
        """Transformer, then the mean over real tokens, then L2 normalisation (sentence-transformers' pipeline)."""

        def __init__(self, transformer: torch.nn.Module) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    return MeanPooled


def _MeanPooled(transformer: Any) -> Any:  # noqa: N802 - builds the torch module lazily (torch loads only when exporting)
    return _mean_pooled_module()(transformer)
