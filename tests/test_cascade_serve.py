"""`atlas cascade serve`: the real `openai` client against the endpoint, the fake OpenAI server upstream."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import uvicorn
from pydantic import ValidationError
from typer.testing import CliRunner

from atlas.cli.main import app as cli
from atlas.endpoint.app import create_app
from atlas.endpoint.config import EndpointConfig
from atlas.endpoint.service import CascadeEndpoint, open_endpoint
from atlas.endpoint.state_file import StateFileError
from atlas.errors import ConfigError
from benchmarks.fake_openai import content_text
from tests.openai_server import Fault, FakeOpenAIServer
from tests.test_cli import atlas_process

POSITIVE = ("wonderful", "great", "moving", "brilliant", "superb", "delightful")
NEGATIVE = ("dull", "awful", "boring", "clumsy", "tedious", "dreadful")
FILLER = ("the", "film", "plot", "actor", "scene", "story", "music", "ending", "camera", "cast", "was", "and", "with", "a")


def review(rng: random.Random) -> str:
    words = [rng.choice(FILLER) for _ in range(10)]
    mood = rng.choice((POSITIVE, NEGATIVE))
    for _ in range(2):
        words.insert(rng.randrange(len(words)), rng.choice(mood))
    return " ".join(words)


def rule(text: str) -> str:
    """The fake upstream model: a word-list rule (it never sees any ground truth)."""
    words = text.split()
    return "positive" if sum(w in POSITIVE for w in words) >= sum(w in NEGATIVE for w in words) else "negative"


def upstream_reply(messages: list[dict[str, Any]]) -> str:
    return f"The answer is {rule(content_text(messages[-1]['content']))}."


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(replier=upstream_reply) as server:
        yield server


def free_socket() -> socket.socket:
    # IPPROTO_TCP said outright: asyncio turns Nagle's algorithm off only on sockets whose proto is TCP (as uvicorn's own
    # are); with proto 0 every response waited ~40 ms for the client's delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class Running:
    """An endpoint served by uvicorn in a thread (lifespan on: restore happened at open, save at stop)."""

    def __init__(self, endpoint: CascadeEndpoint, sock: socket.socket) -> None:
        self.endpoint = endpoint
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(endpoint), log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the endpoint did not start")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self, key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def config(server: FakeOpenAIServer, sock: socket.socket, tmp_path: Path, **changes: Any) -> EndpointConfig:
    fields: dict[str, Any] = {
        "upstream": server.url, "model": "scripted", "upstream_key": "test-key", "labels": "negative,positive",
        "state": tmp_path / "cascade.state", "port": sock.getsockname()[1], "threshold": 0.7, "warmup": 30, "budget_floor": 5,
    }
    return EndpointConfig(**{**fields, **changes})


@pytest.fixture
def start(upstream: FakeOpenAIServer, tmp_path: Path) -> Iterator[Any]:
    running: list[Running] = []

    def _start(**changes: Any) -> Running:
        sock = free_socket()
        served = Running(open_endpoint(config(upstream, sock, tmp_path, **changes)), sock)
        running.append(served)
        return served

    yield _start
    for served in running:
        served.stop()


def ask(client: openai.OpenAI, text: str, model: str = "cascade") -> tuple[Any, Any]:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}])
    return raw.parse(), raw.headers


def test_cheap_level_learns_from_the_upstream_and_says_who_answered(start, upstream: FakeOpenAIServer):
    served = start()
    client = served.client()
    rng = random.Random(0)
    seen: list[tuple[str, Any, Any]] = []
    for _ in range(120):
        text = review(rng)
        completion, headers = ask(client, text)
        seen.append((text, completion, headers))
    levels = [h["x-cascade-level"] for _, _, h in seen]
    assert levels[0] == "upstream" and "hashed_lr" in levels[60:], levels
    for text, completion, headers in seen:
        cascade = completion.usage.model_extra["cascade"]
        assert completion.choices[0].message.content in ("negative", "positive")
        assert cascade["level"] == headers["x-cascade-level"] and float(headers["x-cascade-cost"]) == cascade["cost"]
        if headers["x-cascade-level"] == "upstream":
            assert completion.choices[0].message.content == rule(text)  # the upstream's label is returned
            assert cascade["cost"] == 101 and completion.usage.prompt_tokens > 0 and headers["x-cascade-upstream"] == "answered"
        else:
            assert cascade["cost"] == 1 and completion.usage.total_tokens == 0 and headers["x-cascade-upstream"] == "not-asked"
            assert cascade["confidence"] >= 0.7 and headers["x-cascade-budget"] == "ok"
    cheap = [(t, c) for t, c, h in seen[60:] if h["x-cascade-level"] == "hashed_lr"]
    agreement = np.mean([c.choices[0].message.content == rule(t) for t, c in cheap])
    assert agreement > 0.8, agreement  # it imitates the upstream, not a coin
    stats = httpx.get(served.url + "/cascade/stats").json()
    asked = sum(h["x-cascade-level"] == "upstream" for _, _, h in seen)
    assert stats["requests"] == 120 and stats["upstream_calls"] == asked == len(upstream.calls)
    assert stats["by_level"] == {"upstream": asked, "hashed_lr": 120 - asked}
    assert stats["prompt_tokens"] == sum(p for _, p, _ in upstream.calls) and stats["labels_learned"] + stats["labels_pending"] == asked
    assert client.models.list().data[0].id == "cascade"


def test_a_prompt_template_is_what_the_upstream_sees(start, upstream: FakeOpenAIServer):
    served = start(prompt="Review: {text}\nAnswer with one of {labels}.")
    completion, _ = ask(served.client(), "a wonderful film")
    sent = upstream.requests[-1]
    assert sent["messages"] == [{"role": "user", "content": "Review: a wonderful film\nAnswer with one of negative, positive."}]
    assert sent["model"] == "scripted" and sent["temperature"] == 0.0 and completion.choices[0].message.content == "positive"


def test_without_a_prompt_the_clients_messages_go_upstream_and_the_last_user_message_is_classified(start, upstream: FakeOpenAIServer):
    served = start()
    messages = [{"role": "system", "content": "You label movie reviews."}, {"role": "user", "content": "an awful boring film"},
                {"role": "assistant", "content": "negative"}, {"role": "user", "content": [{"type": "text", "text": "a superb film"}]}]
    completion = served.client().chat.completions.create(model="scripted", messages=messages)  # the upstream's name works too
    assert upstream.requests[-1]["messages"] == messages and completion.choices[0].message.content == "positive"
    assert completion.model == "cascade"


def test_budget_exhausted_returns_the_cheap_answer_and_says_so(start, upstream: FakeOpenAIServer):
    # a warm-up longer than the budget: no cheap level may answer on its own before the budget runs out,
    # whatever the timing of the background learning (deterministic on a loaded machine)
    served = start(budget=0.1, budget_floor=3, warmup=10)
    client = served.client()
    rng = random.Random(1)
    answers = [ask(client, review(rng)) for _ in range(20)]
    upstream_levels = [h["x-cascade-upstream"] for _, h in answers]
    assert upstream_levels[:3] == ["answered"] * 3 and len(upstream.calls) == 3  # max(3, floor(0.1 * 20)) calls
    over = [(c, h) for c, h in answers if h["x-cascade-upstream"] == "over-budget"]
    assert over, upstream_levels
    for completion, headers in over:
        assert headers["x-cascade-budget"] == "exhausted" and completion.usage.model_extra["cascade"]["budget_exhausted"] is True
        assert headers["x-cascade-level"] == "hashed_lr" and completion.choices[0].message.content in ("negative", "positive")
    stats = httpx.get(served.url + "/cascade/stats").json()
    assert stats["budget_exhausted"] == len(over) and stats["budget"]["used"] == 3


def test_a_restart_keeps_what_was_learned(start, upstream: FakeOpenAIServer, tmp_path: Path):
    first = start()
    client = first.client()
    rng = random.Random(2)
    for _ in range(80):
        ask(client, review(rng))
    probes = [review(rng) for _ in range(10)]
    stats_before = httpx.get(first.url + "/cascade/stats").json()
    first.stop()  # lifespan shutdown saves the state (after the last learning step)
    before = first.endpoint.adapter.levels[0].predict_proba(probes)
    assert (tmp_path / "cascade.state").is_file() and not list(tmp_path.glob(".cascade.state.*"))
    calls = len(upstream.calls)
    second = start()
    after = second.endpoint.adapter.levels[0].predict_proba(probes)
    assert np.allclose(before, after)
    stats = httpx.get(second.url + "/cascade/stats").json()
    for key in ("requests", "upstream_calls", "by_level", "labels_learned", "cost_units"):
        assert stats[key] == stats_before[key], key
    confident = [t for t, p in zip(probes, after) if p.max() >= 0.7]
    assert confident, after
    for text in confident:
        _, headers = ask(second.client(), text)
        assert headers["x-cascade-level"] == "hashed_lr"
    assert len(upstream.calls) == calls  # answered from what the first server learned


def test_the_state_is_saved_on_an_interval_while_serving(start, tmp_path: Path):
    served = start(save_every_s=0.2)
    ask(served.client(), "a great film")
    path = tmp_path / "cascade.state"
    deadline = time.monotonic() + 30  # generous: a loaded machine may delay the saver thread
    while not (path.exists() and served.endpoint.saved_at is not None) and time.monotonic() < deadline:
        time.sleep(0.05)  # the file is linked into place first, then saved_at is set
    assert path.is_file() and served.endpoint.saved_at is not None


def test_openai_shaped_errors(start, upstream: FakeOpenAIServer):
    served = start()
    client = served.client()
    with pytest.raises(openai.BadRequestError, match="streaming is not supported"):
        client.chat.completions.create(model="cascade", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.NotFoundError, match="model 'gpt-4o' is not served here: ask for 'cascade'"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a fine film"}])
    with pytest.raises(openai.BadRequestError, match="no user message"):
        client.chat.completions.create(model="cascade", messages=[{"role": "system", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="the last user message is empty"):
        client.chat.completions.create(model="cascade", messages=[{"role": "user", "content": "  "}])
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        client.chat.completions.create(model="cascade", messages=[{"role": "user", "content": "a fine film"}], n=2)
    response = httpx.post(served.url + "/chat/completions", content=b"{not json")
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    assert "not JSON" in response.json()["error"]["message"]
    response = httpx.post(served.url + "/chat/completions", json={"model": "cascade"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    response = httpx.get(served.url + "/embeddings")
    assert response.status_code == 404 and "POST /v1/chat/completions" in response.json()["error"]["message"]
    response = httpx.get(served.url + "/chat/completions")
    assert response.status_code == 405 and set(response.json()["error"]) == {"message", "type", "param", "code"}
    response = httpx.get(served.url + "/models", headers={"host": "attacker.example"})
    assert response.status_code == 421
    assert len(upstream.calls) == 0  # nothing refused reached the upstream


def test_upstream_failures_and_unlabelled_replies(start, upstream: FakeOpenAIServer):
    served = start()
    client = served.client()
    upstream.queue(Fault(status=500), Fault(status=500), Fault(status=500))  # our client retries twice
    with pytest.raises(openai.InternalServerError) as failure:
        ask(client, "a great film")
    assert failure.value.status_code == 502 and failure.value.body["type"] == "upstream_error"
    assert "answered HTTP 500" in failure.value.body["message"]
    upstream.replier = lambda messages: "I cannot tell."
    completion, headers = ask(client, "a great film")
    assert headers["x-cascade-upstream"] == "unparsed" and headers["x-cascade-level"] == "hashed_lr"
    assert completion.usage.model_extra["cascade"]["cost"] == 101 and completion.usage.prompt_tokens > 0
    stats = httpx.get(served.url + "/cascade/stats").json()
    assert stats["upstream_errors"] == 1 and stats["upstream_unparsed"] == 1 and stats["labels_learned"] == 0


def test_a_token_is_required_when_set_and_off_loopback(start, upstream: FakeOpenAIServer, tmp_path: Path):
    served = start(token="s3cret")
    with pytest.raises(openai.AuthenticationError, match="needs its token"):
        ask(served.client("wrong"), "a great film")
    completion, _ = ask(served.client("s3cret"), "a great film")
    assert completion.choices[0].message.content == "positive"
    with pytest.raises(ValidationError, match="exposes the cascade .* pass --token"):
        config(upstream, free_socket(), tmp_path, host="0.0.0.0")
    assert config(upstream, free_socket(), tmp_path, host="0.0.0.0", token="s3cret").host == "0.0.0.0"


def test_bad_state_files_are_clear_errors_and_are_left_alone(upstream: FakeOpenAIServer, tmp_path: Path):
    sock = free_socket()
    path = tmp_path / "cascade.state"
    path.write_bytes(b"\x80\x05garbage")
    with pytest.raises(StateFileError, match="is corrupt or not a cascade endpoint state.*nothing was changed"):
        open_endpoint(config(upstream, sock, tmp_path))
    assert path.read_bytes() == b"\x80\x05garbage"

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path.write_bytes(pickle.dumps({"format": "atlas-cascade-endpoint", "version": 1, "x": Boom()}))
    with pytest.raises(StateFileError, match="refers to posix.system"):
        open_endpoint(config(upstream, sock, tmp_path))
    path.unlink()
    endpoint = open_endpoint(config(upstream, sock, tmp_path))
    endpoint.save()
    with pytest.raises(StateFileError, match="learned for labels negative,positive.*started with labels bad,good,neutral"):
        open_endpoint(config(upstream, sock, tmp_path, labels="bad,good,neutral"))
    moved = open_endpoint(config(upstream, sock, tmp_path, model="another-model"))
    assert any("model 'scripted'" in notice for notice in moved.notices)


@pytest.mark.parametrize(("changes", "message"), [
    ({"labels": "positive"}, "two or more labels"),
    ({"labels": "a,,b"}, "a label is empty"),
    ({"labels": "Yes,yes"}, "labels must differ"),
    ({"prompt": "Classify this."}, r"needs a \{text\} place"),
    ({"prompt": "{text} {answer}"}, r"unknown place\(s\) \{answer\}"),
    ({"upstream": "localhost:8000"}, "http:// or https://"),
    ({"budget": 1.5}, "less than or equal to 1"),
])
def test_bad_options_are_refused_before_anything_starts(upstream: FakeOpenAIServer, tmp_path: Path, changes: dict[str, Any], message: str):
    with pytest.raises(ValidationError, match=message):
        config(upstream, free_socket(), tmp_path, **changes)


def test_cli_refuses_bad_options_before_anything_starts(upstream: FakeOpenAIServer, tmp_path: Path):
    base = ["cascade", "serve", "--upstream", upstream.url, "--model", "scripted", "--state", str(tmp_path / "s.state")]
    result = atlas_process(*base, "--labels", "positive")
    assert result.returncode == 2 and "--labels: give two or more labels" in result.stderr and "Traceback" not in result.stderr
    runner = CliRunner()
    result = runner.invoke(cli, [*base, "--labels", "a,b", "--host", "0.0.0.0"])
    assert isinstance(result.exception, ConfigError) and "--host" not in str(result.exception) and "pass --token" in str(result.exception)
    (tmp_path / "s.state").write_text("not a state")
    result = runner.invoke(cli, [*base, "--labels", "a,b"])
    assert isinstance(result.exception, StateFileError) and "is corrupt" in str(result.exception)
    assert (tmp_path / "s.state").read_text() == "not a state"


@pytest.mark.slow
def test_the_cli_server_saves_on_ctrl_c_and_restores_on_start(upstream: FakeOpenAIServer, tmp_path: Path):
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    command = [sys.executable, "-m", "atlas", "cascade", "serve", "--upstream", upstream.url, "--upstream-key", "test-key", "--model", "scripted",
               "--labels", "negative,positive", "--state", str(tmp_path / "s.state"), "--port", str(port), "--threshold", "0.7"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    rng = random.Random(3)
    for round_number in (1, 2):
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.models.list()
                    break
                except openai.APIConnectionError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise AssertionError(process.communicate()[1]) from None
                    time.sleep(0.1)
            stats = httpx.get(f"http://127.0.0.1:{port}/v1/cascade/stats").json()
            assert stats["requests"] == (0 if round_number == 1 else 40)
            for _ in range(40):
                ask(client, review(rng))
        finally:
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert ("restored after 40 requests" in err) == (round_number == 2), err
    saved = json.loads(json.dumps(pickle.loads((tmp_path / "s.state").read_bytes())["totals"]))
    assert saved["requests"] == 80


@pytest.mark.parametrize(("levels", "policy"), [("hashed", "ocl"), ("hashed,minilm", "threshold")])
def test_the_adapter_state_round_trips_through_the_state_file(levels: str, policy: str, tmp_path: Path):
    from atlas.endpoint import state_file
    from atlas.endpoint.cascade_adapter import CascadeAdapter
    from memory.embed import make_embedder

    encoder = make_embedder("hash:64").encode  # stands in for MiniLM: the level only needs vectors
    adapter = CascadeAdapter(2, levels=levels, policy=policy, encoder=encoder, warmup=10, seed=3)
    rng = random.Random(4)
    queued = []
    for _ in range(150):  # labels learned eight at a time, as a busy endpoint does
        text = review(rng)
        route = adapter.route(text)
        if route.wants_upstream:
            queued.append((text, route, ("negative", "positive").index(rule(text))))
        if len(queued) == 8:
            fork = adapter.fork()
            fork.learn_many(queued)
            assert adapter.labels_learned_ == fork.labels_learned_ - 8  # the fork learned, the adapter did not
            adapter.adopt(fork)
            queued = []
    path = tmp_path / "adapter.state"
    state_file.write_atomic(path, state_file.dumps({"cascade": adapter.state()}))
    again = CascadeAdapter(2, levels=levels, policy=policy, encoder=encoder, warmup=10, seed=3)
    again.restore(state_file.read(path)["cascade"])
    probes = [review(rng) for _ in range(20)]
    assert [again.route(t).label for t in probes] == [adapter.route(t).label for t in probes]
    assert again.level_names == adapter.level_names and again.labels_learned_ == adapter.labels_learned_ > 10
    with pytest.raises(ValueError, match="outside 0..1"):
        adapter.learn("x", adapter.route("x"), 2)


def test_concurrent_requests_share_the_upstream_and_never_overspend_the_budget(start, upstream: FakeOpenAIServer):
    import asyncio

    upstream.latency_s = 0.3
    served = start(budget=0.0, budget_floor=5, warmup=0)
    rng = random.Random(5)
    texts = [review(rng) for _ in range(20)]

    async def main() -> list[Any]:
        async with openai.AsyncOpenAI(base_url=served.url, api_key="unused", max_retries=0) as client:
            calls = [client.chat.completions.with_raw_response.create(model="cascade", messages=[{"role": "user", "content": t}]) for t in texts]
            return await asyncio.gather(*calls)

    answers = asyncio.run(main())
    kinds = [raw.headers["x-cascade-upstream"] for raw in answers]
    assert kinds.count("answered") == 5 and kinds.count("over-budget") == 15 and len(upstream.calls) == 5
    # the upstream calls overlapped (counted by the server itself, so a loaded machine cannot fake or hide it)
    assert upstream.peak_in_flight >= 2, upstream.peak_in_flight


@pytest.mark.slow
def test_serve_bench_runs_and_reports_every_path(tmp_path: Path):
    from benchmarks.cascade.serve_bench import run_serve_bench

    results = run_serve_bench(tmp_path / "bench", train=80, requests=20, upstream_latency_s=0.0, seed=1)
    assert set(results["paths"]) >= {"upstream only (straight to the fake upstream)", "endpoint, a cheap level answered"}
    assert results["paths"]["upstream only (straight to the fake upstream)"]["n"] == 20 and results["state_saved"]
    assert results["endpoint_stats"]["requests"] >= 100 and len(results["summary"]) == 5
