"""`atlas memory mcp` driven by the real MCP client: over stdio (the server is a subprocess, as an
assistant would start it) and over streamable HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atlas.cli.main import app
from atlas.errors import user_message

REPO_ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _env() -> dict[str, str]:
    return {
        "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", "ATLAS_HOME": os.getcwd() + "/home",
    }


def _cli(*args: str):
    return runner.invoke(app, ["memory", *args])


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "memory.sqlite"
    for text, tag in (("check SigninLogs for risky sign-ins", "signin"), ("look for inbox rules after phishing", "phishing")):
        assert _cli("add", text, "--tag", tag, "--embedder", "hash:64", "--store", str(path)).exit_code == 0
    return path


def _text(result) -> str:
    return " ".join(c.text for c in result.content)


def test_stdio_tools_with_the_real_client(store_path: Path):
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    blank = _cli("add", "   ", "--store", str(store_path))
    cli_message = user_message(blank.exception)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "atlas.cli.main", "memory", "mcp", "--store", str(store_path)],
        env=_env(), cwd=str(store_path.parent),
    )

    async def session():
        async with Client(params, read_timeout_seconds=60) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            call = client.call_tool
            hits = (await call("search_memory", {"query": "risky sign-ins in SigninLogs", "k": 2})).structured_content["result"]
            added = (await call("add_pamphlet", {"text": "follow the OAuth app id to AuditLogs", "tags": ["oauth"], "plan": {"kind": "note"}})).structured_content
            shown = (await call("show_pamphlet", {"pamphlet_id": added["id"]})).structured_content
            edited = (await call("edit_pamphlet", {"pamphlet_id": 1, "text": "check SigninLogs and AADSignInEvents", "expected_version": 1})).structured_content
            stale = await call("edit_pamphlet", {"pamphlet_id": 1, "cue": "late", "expected_version": 1})
            same = (await call("edit_pamphlet", {"pamphlet_id": 1, "text": "check SigninLogs and AADSignInEvents"})).structured_content
            # another process (the CLI) edits meanwhile: the running server sees it
            assert _cli("edit", "2", "--set", "tags=phishing,mail", "--store", str(store_path)).exit_code == 0
            listed = (await call("list_pamphlets", {"tags": ["mail"]})).structured_content["result"]
            deleted = _text(await call("delete_pamphlets", {"ids": [2]}))
            after_delete = (await call("search_memory", {"query": "inbox rules phishing"})).structured_content["result"]
            restored = _text(await call("restore_pamphlets", {"ids": [2]}))
            history = (await call("pamphlet_history", {"pamphlet_id": 2})).structured_content["result"]
            missing = await call("show_pamphlet", {"pamphlet_id": 99})
            partly_missing = await call("delete_pamphlets", {"ids": [1, 99]})
            bad_text = await call("add_pamphlet", {"text": "   "})
            bad_tag = await call("add_pamphlet", {"text": "fine", "tags": ["a,b"]})
            bad_audience = await call("add_pamphlet", {"text": "fine", "audience": "admin"})
            bad_k = await call("search_memory", {"query": "x", "k": 0})
            both = await call("edit_pamphlet", {"pamphlet_id": 1, "plan": {"a": 1}, "clear_plan": True})
            still = (await call("list_pamphlets", {"include_deleted": True})).structured_content["result"]
            return locals()

    r = asyncio.run(session())
    assert r["names"] == sorted(["search_memory", "list_pamphlets", "show_pamphlet", "add_pamphlet", "edit_pamphlet", "delete_pamphlets", "restore_pamphlets", "pamphlet_history"])
    assert r["hits"][0]["id"] == 1 and r["hits"][0]["score"] >= r["hits"][1]["score"]
    assert r["added"]["provenance"]["source"] == "mcp" and r["shown"]["track_record"]["uses"] == 0 and r["shown"]["plan"] == {"kind": "note"}
    assert r["edited"]["message"] == "pamphlet 1 is now version 2"
    assert r["stale"].is_error and "no longer version 1 but 2" in _text(r["stale"]) and "nothing was written" in _text(r["stale"])
    assert r["same"]["message"] == "nothing changed"
    assert [p["id"] for p in r["listed"]] == [2]
    assert r["deleted"].startswith("deleted 1 pamphlet(s)") and all(h["id"] != 2 for h in r["after_delete"])
    assert r["restored"] == "restored 1 pamphlet(s)"
    assert [v["change"] for v in r["history"]] == ["created", "edited", "deleted", "restored"]
    assert [v["changed_by"] for v in r["history"]] == ["cli", "cli", "mcp", "mcp"]
    assert r["missing"].is_error and "no pamphlet with id 99" in _text(r["missing"])
    assert r["partly_missing"].is_error and not r["still"][0]["deleted"]  # pamphlet 1 was not deleted
    assert r["bad_text"].is_error and _text(r["bad_text"]).endswith(cli_message)  # the CLI's own words
    assert r["bad_tag"].is_error and "tag 'a,b' must be non-empty and contain no comma" in _text(r["bad_tag"])
    assert r["bad_audience"].is_error and "audience" in _text(r["bad_audience"])
    assert r["bad_k"].is_error and "k" in _text(r["bad_k"])
    assert r["both"].is_error and "either plan or clear_plan" in _text(r["both"])
    assert len(r["still"]) == 3  # no refused call wrote anything
    versions = json.loads(_cli("show", "1", "--json", "--store", str(store_path)).stdout)["version"]
    assert versions == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamable_http_on_loopback(store_path: Path):
    from mcp import Client

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "atlas.cli.main", "memory", "mcp", "--store", str(store_path), "--transport", "http", "--port", str(port)],
        env={**os.environ, **_env()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.2)

        async def session():
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                found = await client.call_tool("search_memory", {"query": "inbox rules after phishing", "k": 1})
                added = await client.call_tool("add_pamphlet", {"text": "over HTTP", "tags": ["http"]})
                return found.structured_content["result"], added.structured_content

        found, added = asyncio.run(session())
        assert found[0]["id"] == 2 and added["id"] == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert json.loads(_cli("show", "3", "--json", "--store", str(store_path)).stdout)["text"] == "over HTTP"


def test_refuses_a_non_loopback_host_and_bad_transport_before_opening_the_store(tmp_path: Path):
    path = tmp_path / "never.sqlite"
    result = _cli("mcp", "--transport", "http", "--host", "0.0.0.0", "--store", str(path))
    assert result.exit_code != 0 and "loopback only" in str(result.exception)
    result = _cli("mcp", "--transport", "sse", "--store", str(path))
    assert "expected stdio or http" in str(result.exception)
    assert not path.exists()
