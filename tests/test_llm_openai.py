"""The real `openai` client against a small OpenAI-compatible server on 127.0.0.1."""

import math

import pytest

from atlas.config import load_settings
from atlas.errors import LLMConfigError, LLMError
from atlas.llm import make_llm
from tests.openai_server import Fault


def test_completion_and_metering(openai_server, openai_settings):
    client = make_llm("openai:gpt-4o-mini", openai_settings)
    completion = client.chat([{"role": "system", "content": "be terse"}, {"role": "user", "content": "hello world"}])
    assert completion.text == "echo: hello world"
    assert completion.usage.prompt_tokens == 4 and completion.usage.completion_tokens == 3
    assert math.isclose(completion.cost_usd, (4 * 0.15 + 3 * 0.60) / 1e6)
    assert client.meter.totals().cost_usd == completion.cost_usd
    sent = openai_server.requests[-1]
    assert sent["model"] == "gpt-4o-mini" and sent["max_tokens"] == 256 and sent["temperature"] == 0.0


def test_reasoning_models_get_room_to_think(openai_server, openai_settings):
    """The cap of a reasoning model covers its hidden reasoning: the reply's cap plus openai.reasoning_tokens."""
    make_llm("openai:gpt-5-mini", openai_settings).chat("hi", max_tokens=12)
    sent = openai_server.requests[-1]
    allowance = openai_settings.openai.reasoning_tokens
    assert sent["max_completion_tokens"] == 12 + allowance and "temperature" not in sent and "max_tokens" not in sent


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_then_succeeds(openai_server, openai_settings, status):
    openai_server.queue(Fault(status=status))
    completion = make_llm("openai:gpt-4o-mini", openai_settings).chat("again")
    assert completion.text == "echo: again"
    assert len(openai_server.requests) == 2


def test_retries_are_bounded(openai_server, openai_settings):
    openai_server.queue(*[Fault(status=500)] * 5)
    with pytest.raises(LLMError, match="failed after 3 attempts: InternalServerError"):
        make_llm("openai:gpt-4o-mini", openai_settings).chat("x")
    assert len(openai_server.requests) == 3


def test_retry_after_header_is_honoured(openai_server, openai_settings):
    openai_server.queue(Fault(status=429, headers={"Retry-After": "0.2"}))
    completion = make_llm("openai:gpt-4o-mini", openai_settings).chat("slow down")
    assert completion.latency_s >= 0.2


def short_timeout_settings(server, tmp_path, **overrides):
    return load_settings(
        environ={"OPENAI_API_KEY": server.api_key, "OPENAI_BASE_URL": server.url},
        home=str(tmp_path),
        openai__timeout_s=0.3,
        openai__backoff_s=0.0,
        **overrides,
    )


def test_timeout_is_retried_then_fails(openai_server, tmp_path):
    settings = short_timeout_settings(openai_server, tmp_path, openai__max_retries=1)
    openai_server.queue(Fault(delay_s=1.0), Fault(delay_s=1.0))
    with pytest.raises(LLMError, match="failed after 2 attempts: APITimeoutError"):
        make_llm("openai:gpt-4o-mini", settings).chat("x")


def test_timeout_then_recovery(openai_server, tmp_path):
    settings = short_timeout_settings(openai_server, tmp_path)
    openai_server.queue(Fault(delay_s=1.0))
    assert make_llm("openai:gpt-4o-mini", settings).chat("late").text == "echo: late"


@pytest.mark.parametrize("body", ["this is not json", '{"id": "x", "object": "chat.completion", "choices": []}'])
def test_malformed_response(openai_server, openai_settings, body):
    openai_server.queue(*[Fault(body=body)] * 3)
    with pytest.raises(LLMError, match="malformed|attempts"):
        make_llm("openai:gpt-4o-mini", openai_settings).chat("x")
    assert len(openai_server.requests) == 3  # malformed replies are retried, boundedly


def test_malformed_once_then_fine(openai_server, openai_settings):
    openai_server.queue(Fault(body='{"choices": null}'))
    assert make_llm("openai:gpt-4o-mini", openai_settings).chat("ok?").text == "echo: ok?"


def test_missing_key_names_the_variable(openai_server, tmp_path):
    settings = load_settings(environ={"OPENAI_BASE_URL": openai_server.url}, home=str(tmp_path))
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        make_llm("openai:gpt-4o-mini", settings)
    assert openai_server.requests == []


def test_refused_key_names_the_variable(openai_server, tmp_path):
    settings = load_settings(
        environ={"OPENAI_API_KEY": "wrong", "OPENAI_BASE_URL": openai_server.url}, home=str(tmp_path)
    )
    with pytest.raises(LLMConfigError, match=r"refused the API key \(HTTP 401\).*OPENAI_API_KEY"):
        make_llm("openai:gpt-4o-mini", settings).chat("x")
    assert len(openai_server.requests) == 1  # a refused key is not retried


def test_bad_request_is_not_retried(openai_server, openai_settings):
    openai_server.queue(Fault(status=400))
    with pytest.raises(LLMError, match="HTTP 400"):
        make_llm("openai:gpt-4o-mini", openai_settings).chat("x")
    assert len(openai_server.requests) == 1


def test_label_scores_from_top_logprobs(openai_server, openai_settings):
    openai_server.top_logprobs = {"Pos": -0.2, " neg": -1.9, "maybe": -3.0}
    client = make_llm("openai:gpt-4o-mini", openai_settings)
    scores = client.score_labels(["great movie"], ["negative", "positive", "neutral"])
    assert scores.logprobs[0][:2] == [-1.9, -0.2]
    assert scores.logprobs[0][2] == -math.inf
    sent = openai_server.requests[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20 and sent["max_tokens"] == 1


def test_unknown_model_price_warns_and_uses_default(openai_server, openai_settings, caplog):
    completion = make_llm("openai:my-vllm-model", openai_settings).chat("hi")
    default = openai_settings.prices["default"]
    expected = (completion.usage.prompt_tokens * default.input_per_1m
                + completion.usage.completion_tokens * default.output_per_1m) / 1e6
    assert completion.cost_usd == pytest.approx(expected) and completion.cost_usd > 0
    assert "no price for model 'my-vllm-model'" in caplog.text
