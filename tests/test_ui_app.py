"""The web page's server, through Starlette's test client on a real SQLite store: every page,
bad input with the CLI's messages, conflicting edits, escaping, the token, CSRF, the Host check
and the runs folder boundary. The browser test (test_ui_browser.py) drives the same pages."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from atlas.cli.main import app as cli_app
from atlas.errors import ConfigError
from atlas.ui.app import create_app
from memory.store import MemoryStore
from tests.ui_fixtures import SCRIPT_TEXT, fill_store, make_run

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    fill_store(tmp_path / "memory.sqlite", tmp_path / "indexes")
    make_run(tmp_path)
    return tmp_path


@pytest.fixture
def memory(home: Path):
    with MemoryStore.open(home / "memory.sqlite", index_dir=home / "indexes") as opened:
        yield opened


@pytest.fixture
def client(memory: MemoryStore, home: Path):
    with TestClient(create_app(memory, home, port=8765, page_size=2), base_url=BASE, follow_redirects=False) as c:
        yield c


def csrf(client: TestClient, path: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def ids_on(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr[^>]*data-id="(\d+)"', html)]


# ---------------------------------------------------------------------------- list, search, filter, sort
def test_list_filter_sort_and_pages(client: TestClient):
    assert client.get("/").headers["location"] == "/pamphlets"
    first = client.get("/pamphlets")
    assert first.status_code == 200 and ids_on(first.text) == [1, 2] and "4 pamphlet(s)" in first.text and "page 1 of 2" in first.text
    assert ids_on(client.get("/pamphlets?page=2").text) == [3, 4]
    assert ids_on(client.get("/pamphlets?sort=-id").text) == [4, 3]
    assert ids_on(client.get("/pamphlets?per_page=all").text) == [1, 2, 3, 4]
    assert ids_on(client.get("/pamphlets?audience=teacher").text) == [3]
    assert ids_on(client.get("/pamphlets?tags=benchmark:soc,phishing").text) == [2]
    assert ids_on(client.get("/pamphlets?tags=benchmark:soc&tags=signin").text) == [1]
    assert ids_on(client.get("/pamphlets?contains=INBOX").text) == [2]
    assert ids_on(client.get("/pamphlets?sort=-reward&per_page=all").text) == [1, 2, 3, 4]  # 0.75, 0.0, then no record
    assert ids_on(client.get("/pamphlets?sort=reward&per_page=all").text) == [2, 1, 3, 4]
    assert ids_on(client.get("/pamphlets?sort=-uses&per_page=all").text) == [1, 2, 3, 4]
    assert "Server-Timing" in first.headers and "script-src" not in first.headers["content-security-policy"]
    assert "default-src 'none'" in first.headers["content-security-policy"]


def test_semantic_search_with_filters(client: TestClient):
    hits = client.get("/pamphlets", params={"q": "phishing email inbox rules"})
    assert ids_on(hits.text)[0] == 2 and "score" in hits.text
    assert ids_on(client.get("/pamphlets", params={"q": "phishing email inbox rules", "audience": "teacher"}).text) == [3]
    assert ids_on(client.get("/pamphlets", params={"q": "risky sign-ins", "tags": "signin"}).text) == [1]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=0", "invalid ListQuery: page: Input should be greater than or equal to 1"),
        ("audience=admin", "invalid ListQuery: audience: Input should be &#39;&#39;, &#39;student&#39; or &#39;teacher&#39;"),
        ("per_page=lots", "per_page: Value error, must be a whole number or &#39;all&#39;"),
        ("sort=colour", "invalid ListQuery: sort"),
        ("k=0", "invalid ListQuery: k"),
    ],
)
def test_bad_list_queries_are_refused_with_the_cli_style_message(client: TestClient, query: str, message: str):
    response = client.get(f"/pamphlets?{query}")
    assert response.status_code == 400 and message in response.text


# ---------------------------------------------------------------------------- one pamphlet
def test_pamphlet_page_shows_provenance_track_record_and_history(client: TestClient, memory: MemoryStore):
    memory.update(1, text="check SigninLogs for risky sign-ins from a new country or ASN", changed_by="cli")
    page = client.get("/pamphlets/1").text
    assert "procedural" in page and "ep-0" in page and "2 use(s), mean reward 0.750" in page and "ep-11" in page
    assert "<ins>or ASN</ins>" in page.replace(" <ins>", "<ins>") or "<ins> or ASN</ins>" in page
    assert page.index('data-version="2"') < page.index('data-version="1"')  # newest first
    missing = client.get("/pamphlets/999")
    assert missing.status_code == 404 and "no pamphlet with id 999" in missing.text
    assert client.get("/nowhere").status_code == 404


def test_pamphlet_text_is_always_escaped(client: TestClient):
    for path in ("/pamphlets?per_page=all", "/pamphlets/4", "/pamphlets/4/edit", "/pamphlets?q=script+pwned"):
        html = client.get(path).text
        assert "<script>window.__pwned" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;window.__pwned" in html, path
    assert SCRIPT_TEXT.startswith("<script>")


# ---------------------------------------------------------------------------- editing
def _edit_form(client: TestClient, pamphlet_id: int, **changes: str) -> dict[str, str]:
    html = client.get(f"/pamphlets/{pamphlet_id}/edit").text
    form = {
        "csrf": re.search(r'name="csrf" value="([^"]+)"', html).group(1),
        "version": re.search(r'name="version" value="(\d+)"', html).group(1),
        "text": re.search(r'<textarea name="text"[^>]*>(.*?)</textarea>', html, re.S).group(1),
        "audience": "student", "tags": re.search(r'name="tags" value="([^"]*)"', html).group(1).replace("&#34;", '"'),
        "cue": "when it fits", "plan": "",
    }
    return {**form, **changes}


def test_edit_preview_then_save_keeps_history(client: TestClient, memory: MemoryStore):
    form = _edit_form(client, 2, text="look for inbox rules and forwarding after a phishing email", tags="phishing, mail")
    preview = client.post("/pamphlets/2/edit", data={**form, "action": "preview"})
    assert preview.status_code == 200 and "<ins>" in preview.text and "forwarding" in preview.text
    assert memory.get(2).version == 1  # a preview writes nothing
    saved = client.post("/pamphlets/2/edit", data={**form, "action": "save"})
    assert saved.status_code == 303 and saved.headers["location"] == "/pamphlets/2?saved=2"
    assert memory.get(2).text == "look for inbox rules and forwarding after a phishing email" and memory.get(2).tags == ["phishing", "mail"]
    assert [v.changed_by for v in memory.history(2)] == ["test", "ui"]
    assert "saved as version 2" in client.get(saved.headers["location"]).text
    again = client.post("/pamphlets/2/edit", data={**_edit_form(client, 2, tags="phishing, mail"), "action": "save"})
    assert again.headers["location"] == "/pamphlets/2?done=unchanged" and memory.get(2).version == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"plan": "{not json"}, "plan is not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
        ({"plan": "[1, 2]"}, "plan must be a JSON object"),
        ({"text": "   "}, "invalid PamphletIn: text: Value error, text must not be blank"),
        ({"audience": "admin"}, "invalid PamphletIn: audience: Input should be &#39;student&#39; or &#39;teacher&#39;"),
    ],
)
def test_bad_edits_are_refused_with_the_cli_message_and_keep_the_input(client: TestClient, memory: MemoryStore, changes, message):
    form = _edit_form(client, 1, **{"text": "my careful new wording", **changes})
    response = client.post("/pamphlets/1/edit", data={**form, "action": "save"})
    assert response.status_code == 400 and message in response.text
    kept = changes.get("text", "my careful new wording").strip() or "   "
    assert kept in response.text  # what the user typed is still in the form
    assert memory.get(1).version == 1


def test_an_edit_from_another_process_is_a_conflict_and_nothing_is_lost(client: TestClient, memory: MemoryStore, home: Path):
    form = _edit_form(client, 1, text="my browser wording")
    with MemoryStore.open(home / "memory.sqlite", index_dir=home / "other-indexes") as other:  # another writer
        other.update(1, text="the other writer's wording", changed_by="other")
    response = client.post("/pamphlets/1/edit", data={**form, "action": "save"})
    assert response.status_code == 409 and "changed in another process" in response.text and "nothing was written" in response.text
    assert "my browser wording" in response.text and memory.get(1).text == "the other writer's wording"
    assert 'name="version" value="2"' in response.text  # saving again is a conscious overwrite of version 2
    retry = dict(form, version="2", action="save")
    assert client.post("/pamphlets/1/edit", data=retry).headers["location"] == "/pamphlets/1?saved=3"
    assert [v.changed_by for v in memory.history(1)] == ["test", "other", "ui"]


def test_deleted_pamphlets_cannot_be_edited(client: TestClient, memory: MemoryStore):
    memory.delete(3)
    response = client.get("/pamphlets/3/edit")
    assert response.status_code == 409 and "restore it before editing" in response.text


# ---------------------------------------------------------------------------- delete, restore, purge
def test_delete_restore_purge(client: TestClient, memory: MemoryStore):
    key = csrf(client, "/pamphlets/3")
    assert client.post("/pamphlets/3/delete", data={"csrf": key}).headers["location"] == "/pamphlets/3?done=deleted"
    assert memory.get(3).deleted and ids_on(client.get("/pamphlets?status=deleted").text) == [3]
    assert 3 not in ids_on(client.get("/pamphlets?per_page=all").text)
    assert client.post("/pamphlets/3/restore", data={"csrf": key}).status_code == 303 and not memory.get(3).deleted
    refused = client.post("/pamphlets/3/purge", data={"csrf": key, "confirm": "yes"})
    assert refused.status_code == 400 and "is not deleted; delete it before purging" in refused.text
    client.post("/pamphlets/3/delete", data={"csrf": key})
    unconfirmed = client.post("/pamphlets/3/purge", data={"csrf": key})
    assert unconfirmed.status_code == 400 and "nothing was purged" in unconfirmed.text and memory.get(3).deleted
    purged = client.post("/pamphlets/3/purge", data={"csrf": key, "confirm": "yes"})
    assert purged.headers["location"] == "/pamphlets?status=deleted&purged=1" and memory.get_many([3]) == []
    assert "purged 1 pamphlet(s) for good" in client.get(purged.headers["location"]).text
    client.post("/pamphlets/2/delete", data={"csrf": key})
    client.post("/pamphlets/4/delete", data={"csrf": key})
    assert client.post("/pamphlets/purge-deleted", data={"csrf": key, "confirm": "yes"}).headers["location"].endswith("purged=2")


def test_posts_without_the_form_key_are_refused(client: TestClient, memory: MemoryStore):
    for path in ("/pamphlets/1/delete", "/pamphlets/1/edit", "/pamphlets/purge-deleted"):
        response = client.post(path, data={"csrf": "forged", "text": "x", "version": "1", "action": "save", "confirm": "yes"})
        assert response.status_code == 403, path
    assert not memory.get(1).deleted and memory.get(1).version == 1


# ---------------------------------------------------------------------------- who may connect
def test_other_hosts_need_a_token(memory: MemoryStore, home: Path):
    with pytest.raises(ConfigError, match="--token"):
        create_app(memory, home, host="0.0.0.0")
    app = create_app(memory, home, host="0.0.0.0", port=8765, token="s3cret")
    with TestClient(app, base_url="http://203.0.113.5:8765", follow_redirects=False) as c:
        assert c.get("/pamphlets").status_code == 401
        assert c.get("/pamphlets?token=wrong").status_code == 401
        entry = c.get("/pamphlets?token=s3cret&status=all")
        assert entry.status_code == 303 and entry.headers["location"] == "/pamphlets?status=all" and "atlas_ui_token" in entry.headers["set-cookie"]
        assert "HttpOnly" in entry.headers["set-cookie"]
        assert c.get("/pamphlets").status_code == 200  # the cookie carries it now
    with TestClient(app, base_url="http://203.0.113.5:8765") as c:
        assert c.get("/pamphlets", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_loopback_answers_only_its_own_host_names(client: TestClient):
    assert client.get("/pamphlets", headers={"host": "evil.example:8765"}).status_code == 421
    assert client.get("/pamphlets", headers={"host": "localhost:8765"}).status_code == 200


def test_cli_refuses_an_open_bind_and_a_missing_store(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(cli_app, ["ui", "--host", "0.0.0.0", "--store", str(tmp_path / "memory.sqlite")])
    assert result.exit_code != 0 and "exposes the memory to the network" in str(result.exception)
    result = runner.invoke(cli_app, ["ui", "--store", str(tmp_path / "missing.sqlite")])
    assert "no memory store at" in str(result.exception)
    result = runner.invoke(cli_app, ["ui", "--runs", str(tmp_path / "nowhere"), "--store", str(tmp_path / "missing.sqlite")])
    assert "runs folder" in str(result.exception) and "does not exist" in str(result.exception)
    assert not (tmp_path / "missing.sqlite").exists()


# ---------------------------------------------------------------------------- runs
def test_runs_pages(client: TestClient, home: Path):
    index = client.get("/runs").text
    assert "runs/first" in index
    page = client.get("/runs/view", params={"path": "runs/first"}).text
    assert "<table>" in page and "<td>atlas</td>" in page  # the report's table
    assert "&lt;script&gt;window.__pwned = 3&lt;/script&gt;" in page and "<script>" not in page
    assert 'src="/runs/file?path=runs%2Ffirst%2Fsuccess_cost.png"' in page
    assert "success_rate" in page and "0.9333" in page and "lane_mix.paired" in page and "phases" in page
    png = client.get("/runs/file", params={"path": "runs/first/success_cost.png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    trace = client.get("/runs/file", params={"path": "runs/first/episodes.jsonl"})
    assert trace.headers["content-type"].startswith("text/plain") and '"episode": 1' in trace.text


def test_runs_never_serve_files_outside_the_folder(client: TestClient, home: Path):
    outside = home.parent / f"{home.name}-secret.json"
    outside.write_text('{"secret": 1}')
    os.symlink(outside, home / "runs" / "first" / "link.json")
    for path in ("../" + outside.name, str(outside), "runs/first/link.json", "memory.sqlite", "runs/first/../../../etc/passwd"):
        response = client.get("/runs/file", params={"path": path})
        assert response.status_code == 404 and '"secret": 1' not in response.text, path
    assert client.get("/runs/view", params={"path": "../"}).status_code == 404
    assert client.get("/runs/view", params={"path": "runs"}).status_code == 404  # not a run folder


def test_the_list_sees_writes_of_other_processes_even_after_a_search(client: TestClient, home: Path):
    assert "rewritten elsewhere" not in client.get("/pamphlets?per_page=all").text  # the list is now kept between requests
    with MemoryStore.open(home / "memory.sqlite", index_dir=home / "other-indexes") as other:
        other.update(3, text="rewritten elsewhere", changed_by="other")
        other.delete(2, changed_by="other")
    client.get("/pamphlets", params={"q": "ransomware"})  # a search applies the other process's changes first
    listed = client.get("/pamphlets?per_page=all&status=all").text
    assert "rewritten elsewhere" in listed and 'class="deleted" data-id="2"' in listed


def test_word_diff_reads_back_both_versions():
    from atlas.ui.diff import changes, word_runs

    before, after = "check SigninLogs for risky sign-ins", "check SigninLogs and AuditLogs for risky  sign-ins today"
    runs = word_runs(before, after)
    assert "".join(t for op, t in runs if op != "+") == before and "".join(t for op, t in runs if op != "-") == after
    assert ("+", "and AuditLogs ") in runs or any(op == "+" and "AuditLogs" in t for op, t in runs)
    diff = changes({"text": before, "tags": ["a"], "deleted": False}, {"text": before, "tags": ["a", "b"], "deleted": True})
    assert [c.field for c in diff] == ["tags", "deleted"] and diff[1].after == "deleted"
