"""`atlas memory ...` driven as a user would, on a real SQLite store with the hashing embedder."""

import json
import sys

import pytest
from typer.testing import CliRunner

from atlas.cli.main import app
from tests.test_cli import atlas_process

runner = CliRunner()


def atlas(*args: str, store=None, input: str | None = None):
    full = list(args) + (["--store", str(store)] if store is not None else [])
    result = runner.invoke(app, ["memory", *full], input=input)
    return result


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "mem.sqlite"
    for text, tags, audience in (
        ("check SigninLogs for risky sign-ins", ["signin"], "student"),
        ("look for inbox rules after a phishing email", ["phishing"], "student"),
        ("escalate ransomware staging to the teacher", ["ransomware"], "teacher"),
    ):
        result = atlas("add", text, "--audience", audience, *sum((["--tag", t] for t in tags), []), "--embedder", "hash:64", store=path)
        assert result.exit_code == 0, result.output
    return path


def test_add_list_show_search(store):
    listed = json.loads(atlas("list", "--json", store=store).stdout)
    assert [p["id"] for p in listed] == [1, 2, 3] and listed[0]["provenance"]["source"] == "cli"
    assert "risky sign-ins" in atlas("list", store=store).output
    assert [p["id"] for p in json.loads(atlas("list", "--audience", "teacher", "--json", store=store).stdout)] == [3]
    shown = json.loads(atlas("show", "2", "--json", store=store).stdout)
    assert shown["tags"] == ["phishing"] and shown["track_record"]["uses"] == 0
    hits = json.loads(atlas("search", "risky sign-ins in SigninLogs", "-k", "2", "--json", store=store).stdout)
    assert hits[0]["id"] == 1 and hits[0]["score"] >= hits[1]["score"]
    assert "score" in atlas("search", "phishing", "--tag", "phishing", store=store).output


def test_edit_with_flags_and_history(store):
    result = atlas("edit", "1", "--text", "check SigninLogs and AADSignInEvents", "--set", "tags=signin,entra", "--set", 'plan={"steps": [1]}', store=store)
    assert result.exit_code == 0 and "version 2" in result.output
    shown = json.loads(atlas("show", "1", "--json", store=store).stdout)
    assert shown["tags"] == ["signin", "entra"] and shown["plan"] == {"steps": [1]}
    history = json.loads(atlas("history", "1", "--json", store=store).stdout)
    assert [v["change"] for v in history] == ["created", "edited"]
    assert "nothing changed" in atlas("edit", "1", "--set", "cue=", store=store).output


def test_edit_in_editor(store, tmp_path, monkeypatch):
    script = tmp_path / "fake_editor.py"
    script.write_text(
        "import json, sys\n"
        "p = sys.argv[1]; d = json.load(open(p)); d['cue'] = 'after a risky sign-in alert'\n"
        "json.dump(d, open(p, 'w'))\n"
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    assert atlas("edit", "1", store=store).exit_code == 0
    assert json.loads(atlas("show", "1", "--json", store=store).stdout)["cue"] == "after a risky sign-in alert"


def test_editor_writing_bad_json_changes_nothing(store, tmp_path, monkeypatch):
    script = tmp_path / "bad_editor.py"
    script.write_text("import sys\nopen(sys.argv[1], 'w').write('{broken')\n")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    result = atlas("edit", "1", store=store)
    assert result.exit_code != 0 and "nothing changed" in str(result.exception)
    assert json.loads(atlas("show", "1", "--json", store=store).stdout)["version"] == 1


def test_delete_restore_purge(store):
    assert atlas("delete", "2", store=store).exit_code == 0
    assert all(h["id"] != 2 for h in json.loads(atlas("search", "inbox rules phishing", "--json", store=store).stdout))
    assert atlas("restore", "2", store=store).exit_code == 0
    assert json.loads(atlas("search", "inbox rules after a phishing email", "-k", "1", "--json", store=store).stdout)[0]["id"] == 2
    atlas("delete", "2", "3", store=store)
    assert atlas("purge", store=store, input="n\n").exit_code != 0  # declined: nothing purged
    assert json.loads(atlas("stats", "--json", store=store).stdout)["deleted"] == 2
    assert "purged 2" in atlas("purge", "--yes", store=store).output
    assert json.loads(atlas("stats", "--json", store=store).stdout)["live"] == 1


def test_export_import_dedup_stats_reindex(store, tmp_path):
    out = tmp_path / "export.jsonl"
    assert "exported 3" in atlas("export", str(out), store=store).output
    copy = tmp_path / "copy.sqlite"
    imported = json.loads(atlas("import", str(out), "--embedder", "hash:64", "--json", store=copy).stdout)
    assert imported["imported"] == 3
    atlas("add", "check SigninLogs for risky sign-ins!", "--tag", "dup", store=copy)
    groups = json.loads(atlas("dedup", "--threshold", "0.9", "--dry-run", "--json", store=copy).stdout)
    assert groups == [{"survivor": 1, "merged": [4], "scores": groups[0]["scores"]}]
    assert "merged 1 pamphlet(s) into 1" in atlas("dedup", "--threshold", "0.9", store=copy).output
    stats = json.loads(atlas("stats", "--json", store=copy).stdout)
    assert stats["live"] == 3 and stats["embedder"] == "hash-64"
    assert "re-embedded 4" in atlas("reindex", "--embedder", "hash:32", store=copy).output
    assert json.loads(atlas("stats", "--json", store=copy).stdout)["dim"] == 32
    assert "hnsw index" in atlas("reindex", "--index", "hnsw", store=copy).output


def test_import_bad_file_reports_lines_and_imports_nothing(store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": ""}\nnot json\n')
    result = atlas_process("memory", "import", str(bad), "--store", str(store))
    assert result.returncode == 2
    assert "line 2: text" in result.stderr and "line 3: not valid JSON" in result.stderr and "nothing was imported" in result.stderr
    assert json.loads(atlas("stats", "--json", store=store).stdout)["live"] == 3
    skipped = json.loads(atlas("import", str(bad), "--skip-invalid", "--json", store=store).stdout)
    assert skipped["imported"] == 1 and [line for line, _ in skipped["skipped_lines"]] == [2, 3]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["show", "99"], "no pamphlet with id 99"),
        (["search", "x", "--embedder", "hash:32"], "built with embedder hash-64"),
        (["edit", "1", "--set", "colour=red"], "expected field=value with field one of text, audience"),
        (["add", "x", "--audience", "boss"], "audience"),
        (["add", "x", "--plan", "{oops"], "--plan is not valid JSON"),
    ],
)
def test_user_errors_exit_2_with_a_message(store, args, fragment):
    result = atlas_process("memory", *args, "--store", str(store))
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_missing_store_is_a_clear_error(tmp_path):
    result = atlas_process("memory", "list", "--store", str(tmp_path / "nothing.sqlite"))
    assert result.returncode == 2 and "no memory store at" in result.stderr


def test_notice_when_the_index_is_rebuilt(store):
    index = store.with_name(store.name + ".index")
    index.unlink()
    result = atlas_process("memory", "list", "--store", str(store))
    assert result.returncode == 0 and "missing; rebuilt" in result.stderr


def test_markup_in_pamphlet_text_is_printed_as_text(tmp_path):
    """Pamphlet text is data: rich markup in it ([/], [red]) is shown literally, never interpreted."""
    path = tmp_path / "mem.sqlite"
    texts = ["close with [/]", "[red]not red[/red] and [bold]"]
    for text in texts:
        assert atlas("add", text, "--tag", "[x]", "--embedder", "hash:64", store=path).exit_code == 0
    for command in (("list",), ("show", "1"), ("show", "2"), ("history", "1"), ("search", "close with")):
        result = atlas(*command, store=path)
        assert result.exit_code == 0, (command, result.output)
    listed = atlas("list", store=path).output
    assert "[/]" in listed and "[red]not red[/red]" in listed and "[x]" in listed
    assert "close with [/]" in atlas("show", "1", store=path).output


@pytest.mark.slow  # loads MiniLM twice (the bench, then the process that opens the store): ~7 s
def test_bench_measures_the_store_and_a_fresh_process_that_opens_it(tmp_path):
    out = tmp_path / "bench"
    result = atlas("bench", "--n", "300", "--mode", "vectors", "--queries", "10", "--out", str(out))
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "results.json").read_text())
    assert figures["n"] == 300 and figures["index_kind"] == "flat" and figures["recall_at_10"] == 1.0  # exact while small
    assert figures["search_p50_ms"] > 0 and figures["faiss_p50_ms"] > 0 and figures["add_per_s"] > 0
    # resident memory comes from a process that only opened the store and searched it, not from the bench's own
    assert 0 < figures["rss_private_mb"] < figures["rss_mb"] < figures["bench_process_rss_mb"]
    assert figures["rss_mb"] == pytest.approx(figures["rss_private_mb"] + figures["rss_file_mb"], abs=2)
    assert 0 < figures["fresh_open_s"] < 60 and "rss_mb" in result.output
