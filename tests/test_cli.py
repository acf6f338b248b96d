import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from atlas import __version__
from atlas.cli.main import app, run

runner = CliRunner()


def atlas_subprocess(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process (kept for one smoke test: it costs seconds)."""
    return subprocess.run(
        [sys.executable, "-m", "atlas.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


def atlas_process(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The console entry point (`run`: exit codes, error printing) in this process, with `env` as the
    whole environment for the call: what a user sees, without a new interpreter per case."""
    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run(list(args))
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["atlas", *args], code, out.getvalue(), err.getvalue())


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"atlas {__version__}"


def test_doctor_json_reports_every_check(tmp_path, monkeypatch):
    monkeypatch.setenv("ATLAS_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["doctor", "--json", "--skip-llm"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert report["ok"] is True and report["version"] == __version__
    assert statuses == {"python": "ok", "torch": "ok", "atlas_home": "ok", "embedding_model": "ok", "openai_endpoint": "skip"}
    assert (tmp_path / "home").is_dir()


def test_doctor_fails_on_a_refused_key_and_exits_nonzero(openai_server, monkeypatch, tmp_path):
    monkeypatch.setenv("ATLAS_HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-key")
    result = runner.invoke(app, ["doctor", "--json", "--skip-llm"])
    assert result.exit_code == 1
    check = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["openai_endpoint"]
    assert check["status"] == "fail" and "OPENAI_API_KEY" in check["detail"]


def test_doctor_passes_against_a_working_endpoint(openai_server, monkeypatch, tmp_path):
    monkeypatch.setenv("ATLAS_HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    result = runner.invoke(app, ["doctor", "--json", "--skip-llm"])
    check = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["openai_endpoint"]
    assert result.exit_code == 0 and check["status"] == "ok" and "1 models" in check["detail"]


def test_chat_against_the_openai_compatible_server(openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    result = runner.invoke(app, ["llm", "chat", "--model", "openai:gpt-4o-mini", "--json", "ping"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["text"] == "echo: ping" and data["usage"] == {"prompt_tokens": 1, "completion_tokens": 2}
    assert data["cost_usd"] > 0


def test_chat_with_cache_flag(monkeypatch, tmp_path):
    monkeypatch.setenv("ATLAS_HOME", str(tmp_path))
    first = json.loads(runner.invoke(app, ["llm", "chat", "-m", "scripted:pong", "--cache", "--json", "hi"]).stdout)
    second = json.loads(runner.invoke(app, ["llm", "chat", "-m", "scripted:pong", "--cache", "--json", "hi"]).stdout)
    assert (first["cached"], second["cached"]) == (False, True)
    assert (tmp_path / "llm_cache.sqlite").is_file()


def test_plain_chat_output_shows_meter():
    result = runner.invoke(app, ["llm", "chat", "-m", "scripted:pong", "hello"])
    assert result.exit_code == 0 and "pong" in result.output and "tokens" in result.output


@pytest.mark.parametrize(
    "args, env_extra, fragment",
    [
        (["llm", "chat", "-m", "gpt4", "hi"], {}, "unknown model spec 'gpt4'"),
        (["llm", "chat", "-m", "openai:gpt-4o-mini", "hi"], {}, "OPENAI_API_KEY"),
        (["doctor", "--skip-llm"], {"OPENAI_BASE_URL": "not-a-url"}, "openai.base_url = 'not-a-url'"),
    ],
)
def test_user_errors_print_cleanly_and_exit_2(args, env_extra, fragment, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")} | env_extra
    result = atlas_process(*args, env=env)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_console_script_smoke(tmp_path):
    """One real process: the entry point, offline defaults and the exit-2 path outside pytest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")} | {"ATLAS_HOME": str(tmp_path)}
    assert atlas_subprocess("--version", env=env).stdout.strip() == f"atlas {__version__}"
    result = atlas_subprocess("llm", "chat", "-m", "gpt4", "hi", env=env)
    assert result.returncode == 2 and "unknown model spec 'gpt4'" in result.stderr and "Traceback" not in result.stderr


def test_bad_config_file_option(tmp_path):
    (tmp_path / "bad.yaml").write_text("cache:\n  enabled: perhaps\n")
    result = atlas_process("--config", str(tmp_path / "bad.yaml"), "doctor", "--skip-llm")
    assert result.returncode == 2 and "cache.enabled = 'perhaps'" in result.stderr
