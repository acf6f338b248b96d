"""Shared fixtures. Tests never download anything and never read the user's own settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from atlas.config import AtlasSettings, load_settings  # noqa: E402
from tests.openai_server import FakeOpenAIServer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# De-quantized local model weights are shared by every test session (about 20 s to make once).
SHARED_MODELS_DIR = REPO_ROOT / ".atlas" / "models"


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder with no user config and no API key in sight."""
    monkeypatch.chdir(tmp_path)
    for variable in ("ATLAS_CONFIG", "ATLAS_HOME", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ATLAS_LLM_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ATLAS_MODELS_DIR", str(SHARED_MODELS_DIR))


@pytest.fixture
def settings(tmp_path: Path) -> AtlasSettings:
    return load_settings(environ={"ATLAS_MODELS_DIR": str(SHARED_MODELS_DIR)}, home=str(tmp_path / "home"))


@pytest.fixture
def openai_server():
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def openai_settings(tmp_path: Path, openai_server: FakeOpenAIServer) -> AtlasSettings:
    return load_settings(
        environ={"OPENAI_API_KEY": openai_server.api_key, "OPENAI_BASE_URL": openai_server.url},
        home=str(tmp_path / "home"),
        openai__timeout_s=2.0,
        openai__max_retries=2,
        openai__backoff_s=0.01,
    )
