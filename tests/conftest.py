"""Shared fixtures. Tests never download anything and never read the user's own settings."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
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


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Torch runs on one thread in the tests, as `benchmarks.continual.evaluation.compare` runs the learners.

    Its default (a thread per core) spins on a busy machine, and with one pytest-xdist worker per core it always
    is: the continual learners' tiny MLPs then took about 17 times the CPU time. faiss has its own OpenMP
    setting, which this leaves alone; subprocesses keep torch's default."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder with no user config and no API key in sight."""
    monkeypatch.chdir(tmp_path)
    for variable in ("ATLAS_CONFIG", "ATLAS_HOME", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ATLAS_LLM_CACHE", "ATLAS_UI_TOKEN"):
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


POSTGRES_URL = os.environ.get("ATLAS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (saying why) when a server is missing; CI sets ATLAS_REQUIRE_SERVICES=1 to fail instead."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("ATLAS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}, and ATLAS_REQUIRE_SERVICES=1 requires it")
    pytest.skip(f"{message}; start it to run these tests")


@contextmanager
def private_namespace(server_url: str, create: str, drop: list[str]) -> Iterator[str]:
    """Create a private `atlas_test_<hex>` schema or database with ``create`` (``{name}`` filled
    in), yield its name, and drop it afterwards with the ``drop`` statements."""
    from sqlalchemy import create_engine

    name = f"atlas_test_{secrets.token_hex(8)}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(create.format(name=name))
        try:
            yield name
        finally:
            with engine.connect() as connection:
                for statement in drop:
                    connection.exec_driver_sql(statement.format(name=name))
    finally:
        engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A private, empty schema on the PostgreSQL server (dropped afterwards), reached through the
    URL's search_path, so that concurrent test runs never share tables."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    from sqlalchemy.engine import make_url

    with private_namespace(POSTGRES_URL, 'CREATE SCHEMA "{name}"', ["SET lock_timeout = '30s'", 'DROP SCHEMA "{name}" CASCADE']) as name:
        yield make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(hide_password=False)


@pytest.fixture
def private_postgres_url(postgres_url: str) -> str:
    """The same private schema as `postgres_url` (the name the LangGraph, MCP and UI tests use)."""
    return postgres_url


MARIADB_URL = os.environ.get("ATLAS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A private, empty database on the MariaDB server the machines run (MySQL protocol, as ExCyTIn-Bench uses).

    Each test gets its own `atlas_test_<hex>` database, dropped afterwards, so concurrent runs
    never collide and tables a user loaded into `test` are never touched.
    """
    require_service("MariaDB", "127.0.0.1", 3306)
    from sqlalchemy.engine import make_url

    drop = ["SET SESSION lock_wait_timeout = 30", "DROP DATABASE `{name}`"]  # a leaked session fails the drop
    with private_namespace(MARIADB_URL, "CREATE DATABASE `{name}` CHARACTER SET utf8mb4", drop) as name:
        yield make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path: Path) -> str:
    """Where a test store lives: a SQLite file, or a private schema on the PostgreSQL server the machines run."""
    if request.param == "sqlite":
        return str(tmp_path / "memory.sqlite")
    return request.getfixturevalue("private_postgres_url")


@pytest.fixture
def store(store_target: str, tmp_path: Path):
    from memory.store import MemoryStore

    opened = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "indexes")
    yield opened
    opened.close()
