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
