"""The LLM agents against a real OpenAI-compatible server: llama.cpp's (`llama-cpp-python[server]`) serving
the bundled SmolLM2 GGUF on loopback. Slow (a CPU model), so marked; CI runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from atlas.config import load_settings
from atlas.errors import LLMConfigError
from atlas.llm import Meter, make_llm
from atlas.llm.capabilities import preflight

pytestmark = [pytest.mark.slow]
CONTEXT = 2048
KEY = "llama-test-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        message = "llama-cpp-python[server] is not installed (make test installs it)"
        if os.environ.get("ATLAS_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from atlas.llm.local_backend import smollm2_gguf_path

    port = _free_port()
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("w+")  # llama.cpp logs a lot: never a pipe nobody reads
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", str(CONTEXT), "--chat_format", "chatml-function-calling", "--api_key", KEY, "--model_alias", "smollm2", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
            urllib.request.urlopen(request, timeout=2).read()
            break
        except OSError:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"llama.cpp server exited: {log.read()[-2000:]}")
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("llama.cpp server did not start within 300 s")
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def _settings(url: str, tmp_path: Path, key: str = KEY, **overrides):
    return load_settings(environ={"OPENAI_API_KEY": key, "OPENAI_BASE_URL": url}, home=str(tmp_path / "home"),
                         openai__timeout_s=300, openai__deadline_s=600, openai__max_retries=1, **overrides)


def test_preflight_finds_native_tools_and_a_wrong_key_stops(llama_server: str, tmp_path: Path) -> None:
    client = make_llm("openai:smollm2", _settings(llama_server, tmp_path))
    capabilities = preflight(client)
    assert capabilities.tools and capabilities.json_schema and capabilities.how == "probed"
    with pytest.raises(LLMConfigError, match="refused the API key"):
        preflight(make_llm("openai:smollm2", _settings(llama_server, tmp_path, key="wrong")))


def test_agent_episodes_run_end_to_end_within_the_context(llama_server: str, tmp_path: Path, tmp_path_factory) -> None:
    from atlas.agents.llm import LLMStudent, LLMTeacher
    from atlas.runner import RunSpec, read_records, run_episodes
    from benchmarks.investigation.arms import inputs_for
    from benchmarks.investigation.database import open_database
    from benchmarks.investigation.episodes import select_questions
    from benchmarks.investigation.generate import generate
    from benchmarks.investigation.question_files import read_questions
    from benchmarks.investigation.tables import schema_summary
    from memory.store import MemoryStore

    world = tmp_path_factory.mktemp("llama") / "world"
    generate(world, seed=6, size="small")
    settings = _settings(llama_server, tmp_path, agents__student_steps=2, agents__teacher_steps=2, agents__validation_steps=1,
                         agents__student_max_tokens=96, agents__teacher_max_tokens=96, agents__json_repairs=1)
    meter = Meter()
    student = LLMStudent(make_llm("openai:smollm2", settings, meter=meter), schema_summary(), settings.agents)
    teacher = LLMTeacher(make_llm("openai:smollm2", settings, meter=meter), schema_summary(), settings.agents)
    memory = MemoryStore.open(str(tmp_path / "m.sqlite"), embedder="hash:64", index_dir=tmp_path)
    questions = select_questions(read_questions(world / "questions.jsonl"), seed=0, limit=2)
    with open_database(str(world / "world.db")) as database:
        results = run_episodes(inputs_for(questions, database), student, teacher, settings.agents,
                               RunSpec("llama", lane="paired", memory=memory, scope=("benchmark:soc",)), tmp_path / "run", meter=meter)
    records = read_records(tmp_path / "run" / "episodes.jsonl")
    assert results["episodes"] == 2 and results["protocol"]["student"]["mode"] == "tools"
    assert all(r["llm_calls"] <= settings.agents.max_llm_calls for r in records)
    # whatever the small model says, no prompt outgrew the server's window: the overflow path (or the
    # budget) kept every call that the server answered inside it, and no episode failed on the model, except
    # by the server's own runaway: llama-cpp-python 0.3.36's chatml-function-calling handler calls
    # create_completion with max_tokens=None when tool_choice is "auto" (the free-text message and each tool's
    # arguments), so a model that does not stop fills the context, and the handler's next sub-completion is
    # refused with exactly n_ctx + 1 tokens "in the messages", however short the prompt the client sent. Such an
    # episode is recorded as a model error, which is what a user of that server sees; any other kind fails here.
    runaway = f"({CONTEXT + 1} in the messages"
    errors = [(r["question"], r["reason"]) for r in records if r["model_error"]]
    assert all(runaway in reason for _, reason in errors), errors
    assert results["model_errors"] == len(errors) < len(records), errors  # at least one episode ran to its end
    assert meter.totals().calls > 4
    memory.close()
