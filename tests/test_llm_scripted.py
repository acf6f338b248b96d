import math

import pytest

from atlas.config import load_settings
from atlas.errors import LLMConfigError, LLMError
from atlas.llm import LLMClient, Meter, ResponseCache, ScriptedBackend, make_llm
from atlas.llm.meter import PriceTable


def client_for(backend, settings, **kwargs):
    return LLMClient(backend, PriceTable(settings), **kwargs)


def test_replies_in_order_and_metered(settings):
    client = client_for(ScriptedBackend(["first answer", "second"]), settings)
    assert client.chat("hello there").text == "first answer"
    completion = client.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "again"}])
    assert completion.text == "second"
    assert completion.usage.prompt_tokens == 3 and completion.usage.completion_tokens == 1
    totals = client.meter.totals()
    assert totals.calls == 2
    assert totals.prompt_tokens == 2 + 3 and totals.completion_tokens == 2 + 1
    # scripted is priced like a local model: the declared local figure
    expected = (5 * 0.02 + 3 * 0.02) / 1e6
    assert math.isclose(totals.cost_usd, expected)
    assert totals.by_model["scripted"].calls == 2


def test_running_out_of_replies_is_a_clear_error(settings):
    client = client_for(ScriptedBackend(["only"]), settings)
    client.chat("a")
    with pytest.raises(LLMError, match="ran out of replies after 1 calls"):
        client.chat("b")


def test_function_replier_and_max_tokens(settings):
    client = client_for(ScriptedBackend(lambda msgs: "word " * 10), settings)
    completion = client.chat("x", max_tokens=3)
    assert completion.text == "word word word" and completion.finish_reason == "length"


def test_bad_messages_and_params_are_rejected(settings):
    client = client_for(ScriptedBackend(["x"]), settings)
    with pytest.raises(ValueError):
        client.chat([{"role": "wizard", "content": "hi"}])
    with pytest.raises(ValueError):
        client.chat([])
    with pytest.raises(ValueError):
        client.chat("hi", max_tokens=0)


def test_shared_meter_totals_a_run(settings):
    meter = Meter()
    a = client_for(ScriptedBackend(["a b"], model="model-a"), settings, meter=meter)
    b = client_for(ScriptedBackend(["c"], model="model-b"), settings, meter=meter)
    a.chat("one")
    b.chat("two three")
    totals = meter.totals()
    assert totals.calls == 2 and set(totals.by_model) == {"model-a", "model-b"}
    assert totals.to_dict()["by_model"]["model-a"]["completion_tokens"] == 2


def test_cache_hits_and_misses(settings, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    backend = ScriptedBackend(["one", "two", "three"])
    client = client_for(backend, settings, cache=cache)
    first = client.chat("same prompt")
    again = client.chat("same prompt")
    other_params = client.chat("same prompt", temperature=0.5)
    assert (first.text, again.text, other_params.text) == ("one", "one", "two")
    assert again.cached and not first.cached and again.cost_usd == 0.0
    assert again.usage == first.usage  # what the answer cost when it was made
    assert cache.stats() == {"hits": 1, "misses": 2, "entries": 2}
    assert len(backend.calls) == 2
    # the cache persists across processes (a new connection to the same file)
    reopened = client_for(ScriptedBackend([]), settings, cache=ResponseCache(tmp_path / "cache.sqlite"))
    assert reopened.chat("same prompt").text == "one"
    totals = client.meter.totals()
    assert totals.cached_calls == 1 and totals.calls == 3


def test_cache_follows_config(tmp_path):
    settings = load_settings(environ={"ATLAS_LLM_CACHE": "true"}, home=str(tmp_path / "h"))
    client = make_llm("scripted:hi", settings)
    client.chat("q")
    assert client.chat("q").cached
    assert settings.cache_path.is_file()
    assert make_llm("scripted:hi", settings, cache=False).cache is None


def test_label_scores_with_a_scorer_and_cache(settings, tmp_path):
    backend = ScriptedBackend([], label_scorer=lambda msgs, labels: [0.25, 0.75])
    client = client_for(backend, settings, cache=ResponseCache(tmp_path / "c.sqlite"))
    scores = client.score_labels(["good film", "bad film"], ["negative", "positive"])
    assert scores.labels == ("negative", "positive")
    assert scores.logprobs[1] == pytest.approx([math.log(0.25), math.log(0.75)])
    client.score_labels(["good film"], ["negative", "positive"])
    assert client.cache.hits == 1 and len(backend.calls) == 2


def test_label_scores_unsupported_is_a_clear_error(settings):
    client = client_for(ScriptedBackend(["x"]), settings)
    with pytest.raises(LLMConfigError, match="cannot score label words"):
        client.score_labels(["text"], ["a", "b"])


def test_unknown_spec_lists_valid_forms(settings):
    with pytest.raises(LLMConfigError, match="expected one of: openai:<model>"):
        make_llm("gpt4", settings)
    with pytest.raises(LLMConfigError, match="names no model"):
        make_llm("openai:", settings)
