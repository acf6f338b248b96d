import numpy as np
import pytest

from memory.embed import HashingEmbedder, make_embedder


def test_hashing_embedder_is_deterministic_and_normalised():
    embedder = make_embedder("hash:64")
    a = embedder.encode(["failed sign-in from new country", "failed sign-in from new country", ""])
    assert a.shape == (3, 64) and a.dtype == np.float32
    assert np.allclose(a[0], a[1]) and np.isclose(np.linalg.norm(a[0]), 1.0)
    assert np.allclose(a[2], 0.0)  # empty text has no features
    assert np.allclose(HashingEmbedder(64).encode(["failed sign-in from new country"])[0], a[0])


def test_hashing_similarity_follows_overlap():
    e = HashingEmbedder(512)
    v = e.encode(["password spray against many accounts", "password spray on accounts", "inbox rule created"])
    assert v[0] @ v[1] > v[0] @ v[2]


def test_minilm_loads_offline_from_the_package():
    embedder = make_embedder("minilm")
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384
    v = embedder.encode(["a phishing email with a malicious link", "an email carrying a credential phishing URL", "quarterly sales figures"])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


@pytest.mark.parametrize("spec, fragment", [("hash:big", "whole number"), ("hash:4", "at least 8"), ("no-such-model", "unknown embedder")])
def test_bad_embedder_specs(spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_embedder(spec)


def test_minilm_queries_run_on_the_onnx_export_with_the_same_vectors():
    from memory.onnx_encoder import TOLERANCE

    embedder = make_embedder("minilm")  # exported once per machine into ~/.cache/atlas/onnx, then reused
    assert embedder.query_backend == "onnxruntime" and embedder._fast.path.is_file()
    texts = ["which account signed in from the new country", "x", "ünïcödé Ελληνικά 中文 🙂", "long " * 400, " padded  spaces "]
    expected = embedder._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    one_by_one = np.concatenate([embedder.encode([t]) for t in texts])  # the ONNX path (few texts)
    batched = embedder._fast.encode(texts)  # padded batch through ONNX
    assert np.abs(one_by_one - expected).max() <= TOLERANCE and np.abs(batched - expected).max() <= TOLERANCE


def test_onnx_export_that_cannot_be_written_falls_back_to_torch(tmp_path, caplog):
    from memory.embed import SentenceTransformerEmbedder, minilm_path

    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    embedder = SentenceTransformerEmbedder(minilm_path(), cache_dir=blocker / "onnx")
    assert embedder.query_backend == "torch" and "stays on PyTorch" in caplog.text
    assert embedder.encode(["still works"]).shape == (1, 384)


def test_a_checked_onnx_export_answers_queries_without_loading_pytorch(tmp_path):
    """A process that only embeds queries (a Ray actor, a worker) starts on onnxruntime alone."""
    import subprocess
    import sys

    from memory.embed import SentenceTransformerEmbedder, minilm_path

    first = SentenceTransformerEmbedder(minilm_path(), cache_dir=tmp_path)  # exports and checks once
    assert first._fast.path.with_name(first._fast.path.name + ".checked").is_file()
    expected = first._model.encode(["a query"], normalize_embeddings=True, convert_to_numpy=True)
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from memory.embed import SentenceTransformerEmbedder, minilm_path\n"
        f"e = SentenceTransformerEmbedder(minilm_path(), cache_dir=Path({str(tmp_path)!r}))\n"
        "v = e.encode(['a query'])\n"
        "print(e.dim, 'torch' in sys.modules, e.query_backend)\n"
        "np.save(sys.argv[1], v)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "v.npy")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["384", "False", "onnxruntime"], out.stdout + out.stderr
    assert np.abs(np.load(tmp_path / "v.npy") - expected).max() <= 1e-5


def test_an_unchecked_onnx_export_is_checked_against_pytorch_before_use(tmp_path):
    from memory.embed import SentenceTransformerEmbedder, minilm_path

    first = SentenceTransformerEmbedder(minilm_path(), cache_dir=tmp_path)
    marker = first._fast.path.with_name(first._fast.path.name + ".checked")
    marker.unlink()
    again = SentenceTransformerEmbedder(minilm_path(), cache_dir=tmp_path)
    assert marker.is_file() and again._loaded is not None  # PyTorch was loaded for the check


def test_bulk_encoding_loads_pytorch_and_agrees_with_the_declared_dimension(tmp_path):
    from memory.embed import SentenceTransformerEmbedder, declared_shape, minilm_path

    assert declared_shape(minilm_path()) == (384, 256)
    assert declared_shape(tmp_path) is None  # no sentence-transformers files: the model is asked instead
    embedder = SentenceTransformerEmbedder(minilm_path(), cache_dir=tmp_path)
    vectors = embedder.encode([f"text number {i}" for i in range(70)])  # more than the query path takes
    assert vectors.shape == (70, 384) and embedder._loaded is not None
