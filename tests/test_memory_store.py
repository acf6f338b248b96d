"""The memory store on SQLite and PostgreSQL: CRUD, filters, history, soft delete, transfer, dedup."""

import json

import pytest
from pydantic import ValidationError

from memory.errors import ImportValidationError, MemoryStoreError, PamphletNotFound
from memory.store import MemoryStore

PLAN = {"steps": [{"table": "SigninLogs", "find": "IPAddress"}]}


def seed(store):
    return store.add_many(
        [
            {"text": "check SigninLogs for risky sign-ins of the user", "tags": ["signin", "soc"], "plan": PLAN},
            {"text": "look for inbox rules created after a phishing email", "tags": ["phishing", "soc"]},
            {"text": "trace the malware hash across DeviceFileEvents", "audience": "teacher", "tags": ["malware"]},
            {"text": "count failed sign-ins per IP to spot a password spray", "tags": ["signin", "spray"]},
        ],
        changed_by="test",
    )


def test_add_get_and_fields(store):
    ids = seed(store)
    assert ids == sorted(ids) and len(set(ids)) == 4
    p = store.get(ids[0])
    assert p.text.startswith("check SigninLogs") and p.plan == PLAN and p.version == 1
    assert p.embedding_model == "hash-64" and p.embedding_dim == 64 and len(p.content_hash) == 64
    assert p.created_at.tzinfo is not None and not p.deleted
    with pytest.raises(PamphletNotFound, match="no pamphlet with id 999"):
        store.get(999)


@pytest.mark.parametrize("bad", [{"text": "  "}, {"text": "x", "audience": "manager"}, {"text": "x", "tags": ["a,b"]}, {"txt": "typo"}])
def test_invalid_pamphlets_store_nothing(store, bad):
    seed(store)
    with pytest.raises(ValidationError):
        store.add_many([{"text": "a fine one"}, bad])
    assert store.stats()["live"] == 4  # validation happens before any write


def test_search_ranks_and_filters(store):
    ids = seed(store)
    hits = store.search("risky sign-ins of the user in SigninLogs", k=2)
    assert hits[0].pamphlet.id == ids[0] and hits[0].score >= hits[1].score
    assert all(h.pamphlet.audience == "teacher" for h in store.search("sign-ins", k=5, audience="teacher"))
    tagged = store.search("sign-ins", k=5, tags=["signin", "spray"])
    assert [h.pamphlet.id for h in tagged] == [ids[3]]  # all given tags must be present
    assert store.search("sign-ins", k=5, min_score=0.99) == []


def test_update_reembeds_and_keeps_history(store):
    ids = seed(store)
    updated = store.update(ids[1], text="review OAuth consent grants to unknown apps", tags=["oauth"], changed_by="alice")
    assert updated.version == 2 and updated.tags == ["oauth"]
    assert store.search("OAuth consent grants", k=1)[0].pamphlet.id == ids[1]
    assert store.search("OAuth consent", k=5, tags=["phishing"]) == []  # old tags gone from filters
    versions = store.history(ids[1])
    assert [(v.version, v.change, v.changed_by) for v in versions] == [(1, "created", "test"), (2, "edited", "alice")]
    assert versions[0].snapshot["text"].startswith("look for inbox rules")  # the previous version is kept
    assert store.update(ids[1], cue=updated.cue).version == 2  # no change, no new version
    assert store.update(ids[0], plan=None).plan is None


def test_soft_delete_never_leaks_into_search(store):
    ids = seed(store)
    store.delete(ids[0], changed_by="test")
    for query in ("check SigninLogs for risky sign-ins of the user", "sign-in", "anything"):
        assert ids[0] not in {h.pamphlet.id for h in store.search(query, k=10)}
    assert ids[0] not in {p.id for p in store.list()}
    assert store.get(ids[0]).deleted and ids[0] in {p.id for p in store.list(include_deleted=True)}
    with pytest.raises(MemoryStoreError, match="restore it before editing"):
        store.update(ids[0], text="x")
    store.restore(ids[0])
    assert store.search("check SigninLogs for risky sign-ins of the user", k=1)[0].pamphlet.id == ids[0]
    assert [v.change for v in store.history(ids[0])] == ["created", "deleted", "restored"]


def test_purge(store):
    ids = seed(store)
    with pytest.raises(MemoryStoreError, match="is not deleted"):
        store.purge([ids[0]])
    store.delete(ids[0])
    store.record_use(ids[0], "ep-1", 1.0)
    assert store.purge() == 1
    with pytest.raises(PamphletNotFound):
        store.get(ids[0])
    assert store.stats()["deleted"] == 0 and store.purge() == 0


def test_track_record(store):
    ids = seed(store)
    store.record_use(ids[0], "ep-1", 1.0)
    store.record_use(ids[0], "ep-2", 0.0)
    record = store.track_record(ids[0])
    assert record.uses == 2 and record.mean_reward == 0.5 and record.last_used_at is not None
    assert store.track_record(ids[1]).uses == 0
    for bad in (1.5, float("nan"), "high"):
        with pytest.raises(MemoryStoreError, match=r"reward must be a number in \[0, 1\]"):
            store.record_use(ids[0], "ep-3", bad)
    with pytest.raises(PamphletNotFound):
        store.record_use(12345, "ep-3", 0.5)


def test_list_filters_and_stats(store):
    seed(store)
    assert len(store.list(tags=["soc"])) == 2 and len(store.list(audience="teacher")) == 1
    assert len(store.list(limit=2)) == 2 and len(store.list(limit=2, offset=3)) == 1
    stats = store.stats()
    assert stats["live"] == 4 and stats["by_audience"] == {"student": 3, "teacher": 1}
    assert stats["top_tags"]["soc"] == 2 and stats["index"]["vectors"] == 4


def test_summaries_match_the_full_rows_and_track_records(store):
    ids = seed(store)
    store.delete(ids[1], changed_by="test")
    store.update(ids[2], text="trace the hash across DeviceFileEvents and DeviceProcessEvents", changed_by="test")
    store.record_use(ids[0], "ep-1", 1.0)
    store.record_use(ids[0], "ep-2", 0.0)
    full = {p.id: p for p in store.list(include_deleted=True, limit=None)}
    every = store.summaries(include_deleted=True)
    assert [s.id for s in every] == sorted(full)
    for summary in every:
        pamphlet = full[summary.id]
        assert (summary.text, summary.audience, summary.tags, summary.cue, summary.version, summary.deleted) == (
            pamphlet.text, pamphlet.audience, pamphlet.tags, pamphlet.cue, pamphlet.version, pamphlet.deleted)
        assert summary.created_at == pamphlet.created_at and summary.updated_at == pamphlet.updated_at
        assert summary.updated_at.tzinfo is not None
    assert [s.id for s in store.summaries()] == [i for i in ids if i != ids[1]]
    assert [s.id for s in store.summaries(limit=2, offset=1)] == [ids[2], ids[3]]
    assert [s.id for s in store.summaries(include_deleted=True, offset=3)] == [ids[3]]
    records = store.all_track_records()
    assert set(records) == {ids[0]}
    assert records[ids[0]] == store.track_record(ids[0])


def test_export_import_round_trip_is_lossless(store, tmp_path):
    ids = seed(store)
    store.update(ids[0], text="check SigninLogs for risky sign-ins (edited)")
    store.record_use(ids[0], "ep-7", 0.75)
    store.delete(ids[2])
    first = tmp_path / "first.jsonl"
    assert store.export_jsonl(first, include_deleted=True) == 4
    with MemoryStore.open(tmp_path / "copy.sqlite", embedder="hash:64") as copy:
        report = copy.import_jsonl(first)
        assert report.imported == 4 and report.renumbered == {}
        second = tmp_path / "second.jsonl"
        copy.export_jsonl(second, include_deleted=True)
        assert copy.search("risky sign-ins edited", k=1)[0].pamphlet.id == ids[0]
        assert ids[2] not in {h.pamphlet.id for h in copy.search("malware hash", k=10)}
    assert [json.loads(line) for line in first.read_text().splitlines()] == [json.loads(line) for line in second.read_text().splitlines()]


def test_import_bad_lines_imports_nothing_unless_skipping(store, tmp_path):
    seed(store)
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"text": "good one", "tags": ["a"]}\n'
        "{not json\n"
        "\n"
        '{"text": "bad audience", "audience": "boss"}\n'
        '["a list"]\n'
        '{"text": "another good one"}\n'
    )
    with pytest.raises(ImportValidationError) as info:
        store.import_jsonl(path)
    message = str(info.value)
    assert "3 bad line(s); nothing was imported" in message
    assert "line 2: not valid JSON" in message and "line 4: audience" in message and "line 5: expected a JSON object" in message
    assert store.stats()["live"] == 4
    report = store.import_jsonl(path, skip_invalid=True)
    assert report.imported == 2 and [line for line, _ in report.skipped_lines] == [2, 4, 5]
    assert store.import_jsonl(path, skip_invalid=True).duplicates == 2  # same content again is skipped


def test_import_into_a_busy_store_renumbers_taken_ids(store, tmp_path):
    ids = seed(store)
    path = tmp_path / "out.jsonl"
    store.export_jsonl(path)
    for pamphlet_id in ids:
        store.update(pamphlet_id, text=f"changed text {pamphlet_id}")
    report = store.import_jsonl(path)
    assert report.imported == 4 and set(report.renumbered) == set(ids)
    assert store.stats()["live"] == 8


def test_empty_and_missing_import_files(store, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(MemoryStoreError, match="holds no pamphlets"):
        store.import_jsonl(tmp_path / "empty.jsonl")
    with pytest.raises(MemoryStoreError, match="does not exist"):
        store.import_jsonl(tmp_path / "nope.jsonl")


def test_dedup_merges_keeping_provenance_uses_and_history(store):
    a = store.add({"text": "check SigninLogs for the risky sign-in of the user", "tags": ["signin"], "provenance": {"episode_ids": ["e1"]}}).id
    b = store.add({"text": "check SigninLogs for the risky sign-in of the user!", "tags": ["soc"], "provenance": {"episode_ids": ["e2"]}}).id
    c = store.add({"text": "exfiltration over DNS to a rare domain"}).id
    store.record_use(b, "e2", 1.0)
    assert [(g.survivor, g.merged) for g in store.dedup(threshold=0.9, dry_run=True)] == [(a, (b,))]
    assert store.get(b).deleted is False  # dry run changes nothing
    store.dedup(threshold=0.9)
    survivor = store.get(a)
    assert survivor.tags == ["signin", "soc"] and survivor.provenance.episode_ids == ["e1", "e2"]
    assert survivor.provenance.merged_from == [b]
    assert store.track_record(a).uses == 1
    assert store.get(b).deleted and store.history(b)[-1].change == f"merged into {a}"
    assert store.history(a)[-1].change == "merged"
    assert not store.get(c).deleted


def test_two_store_handles_see_each_others_writes(store_target, tmp_path):
    """Two handles on one store behave like two processes: each picks up the other's writes."""
    first = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "i1")
    second = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "i2")
    pid = first.add({"text": "hunt for encoded PowerShell in DeviceProcessEvents"}).id
    assert second.search("encoded PowerShell", k=1)[0].pamphlet.id == pid
    second.update(pid, text="hunt for rundll32 launching from temp folders")
    assert first.search("rundll32 temp folders", k=1)[0].pamphlet.id == pid
    second.delete(pid)
    assert first.search("rundll32 temp folders", k=5) == []
    second.purge()
    assert first.search("rundll32", k=5) == [] and len(first._index) == 0
    first.close()
    second.close()


def test_concurrent_edit_of_the_same_pamphlet_is_refused(store_target, tmp_path):
    from memory.errors import ConcurrentEdit
    from memory.schema import PamphletIn

    first = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "i1")
    second = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "i2")
    pid = first.add({"text": "original guidance"}).id
    read_by_first = first.get(pid)
    second.update(pid, text="second process wrote this")
    with pytest.raises(ConcurrentEdit, match="nothing was written"):
        first._commit_change(read_by_first, PamphletIn(text="first process wrote this"), None, "first", "edited")
    assert first.get(pid).text == "second process wrote this"
    assert [v.change for v in first.history(pid)] == ["created", "edited"]
    first.close()
    second.close()


@pytest.mark.slow
def test_large_id_lists_are_chunked(store_target, tmp_path):
    first = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "i1")
    second = MemoryStore.open(store_target, embedder="hash:64", index_dir=tmp_path / "i2")
    ids = first.add_many([{"text": f"bulk pamphlet {i}"} for i in range(2500)])
    assert len(second.list(limit=None)) == 2500  # one query per 900 ids
    assert second.sync() == 2500 and len(second._index) == 2500
    assert len(second.track_records(ids)) == 2500
    for pamphlet_id in ids[:950]:
        first.delete(pamphlet_id)
    assert second.purge(ids[:950]) == 950  # more explicit ids than one IN list holds
    assert first.search("bulk pamphlet 3", k=3)[0].pamphlet.id not in ids[:950]
    first.close()
    second.close()
