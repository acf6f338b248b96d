"""The LangGraph store adapter: a contract test written from LangGraph's `BaseStore` documentation
(get/put/delete, namespaces and their validation, search with filters, operators, limit/offset and
a query, list_namespaces with prefix/suffix/wildcards/max_depth, batch, async twins), the memory's
own guarantees (versions, history, soft delete, track records), a real graph compiled with
`store=` on SQLite and on PostgreSQL, and langmem's memory tools."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from langgraph.store.base import GetOp, InvalidNamespaceError, ListNamespacesOp, PutOp, SearchOp

from memory.errors import MemoryStoreError
from memory.langgraph_store import MemoryBaseStore
from memory.store import MemoryStore


@pytest.fixture
def lg(tmp_path: Path):
    with MemoryBaseStore.open(tmp_path / "memory.sqlite", embedder="hash:256", index_dir=tmp_path / "indexes") as store:
        yield store


@pytest.fixture
def filled(lg: MemoryBaseStore) -> MemoryBaseStore:
    lg.put(("docs", "u1"), "a", {"kind": "article", "score": 5, "color": "red", "meta": {"lang": "en"}, "text": "solar panels on roofs"})
    lg.put(("docs", "u1"), "b", {"kind": "article", "score": 3, "color": "blue", "meta": {"lang": "de"}, "text": "wind turbines at sea"})
    lg.put(("docs", "u2"), "c", {"kind": "note", "score": 4.5, "color": "red", "meta": {"lang": "en"}, "text": "solar cells efficiency"})
    lg.put(("docs", "u2", "drafts"), "d", {"kind": "note", "score": 1, "color": "green", "text": "grocery list"})
    lg.put(("users",), "u1", {"name": "Alice"})
    return lg


# ---------------------------------------------------------------------------- get / put / delete
def test_put_get_update_delete(lg: MemoryBaseStore):
    assert lg.get(("users",), "nobody") is None
    lg.put(("users", "profiles"), "u1", {"name": "Alice", "langs": ["en", "fr"], "nested": {"x": 1}, "note": "naïve ✓"})
    item = lg.get(("users", "profiles"), "u1")
    assert item.value == {"name": "Alice", "langs": ["en", "fr"], "nested": {"x": 1}, "note": "naïve ✓"}
    assert item.key == "u1" and item.namespace == ("users", "profiles")
    assert item.created_at == item.updated_at
    time.sleep(0.01)
    lg.put(("users", "profiles"), "u1", {"name": "Alice B."})
    updated = lg.get(("users", "profiles"), "u1")
    assert updated.value == {"name": "Alice B."} and updated.created_at == item.created_at and updated.updated_at > item.updated_at
    lg.delete(("users", "profiles"), "u1")
    assert lg.get(("users", "profiles"), "u1") is None
    lg.delete(("users", "profiles"), "u1")  # deleting what is gone is not an error
    lg.delete(("users", "profiles"), "never-there")


def test_pamphlet_shaped_values_map_onto_fields(lg: MemoryBaseStore):
    lg.put(("student", "benchmark:soc"), "k", {"text": "check SigninLogs first", "plan": {"kind": "note"}, "cue": "risky sign-in"})
    pamphlet = lg.pamphlet(("student", "benchmark:soc"), "k")
    assert (pamphlet.text, pamphlet.plan, pamphlet.cue, pamphlet.audience) == ("check SigninLogs first", {"kind": "note"}, "risky sign-in", "student")
    assert "benchmark:soc" in pamphlet.tags  # the agents' scoped retrieval sees it
    assert lg.get(("student", "benchmark:soc"), "k").value == {"text": "check SigninLogs first", "plan": {"kind": "note"}, "cue": "risky sign-in"}
    lg.put(("teacher",), "t", {"text": "review plans"})
    assert lg.pamphlet(("teacher",), "t").audience == "teacher"
    lg.put(("memories", "u1"), "m", {"content": "likes tea"})
    assert lg.pamphlet(("memories", "u1"), "m").audience == "student"  # the default audience


def test_same_key_in_different_namespaces_are_different_items(lg: MemoryBaseStore):
    lg.put(("a",), "k", {"v": 1})
    lg.put(("a", "b"), "k", {"v": 2})
    lg.put(("b",), "k", {"v": 3})
    assert [lg.get(ns, "k").value["v"] for ns in (("a",), ("a", "b"), ("b",))] == [1, 2, 3]
    odd = ("with/slash", "per%cent", "colon:ok", "space inside")
    lg.put(odd, "key/with?odd&chars", {"v": 4})
    assert lg.get(odd, "key/with?odd&chars").value == {"v": 4} and lg.list_namespaces(prefix=("with/slash",)) == [odd]


@pytest.mark.parametrize(
    ("namespace", "message"),
    [
        ((), "empty"),
        (("langgraph", "x"), "langgraph"),
        (("a.b",), "periods"),
        (("",), "empty"),
        (("a", 3), "strings"),
        (("a,b",), "comma"),
        ((" a",), "spaces"),
        (("lg:ns=x",), "reserved"),
    ],
)
def test_bad_namespaces_are_refused_and_write_nothing(lg: MemoryBaseStore, namespace, message):
    with pytest.raises(InvalidNamespaceError, match=message):
        lg.put(namespace, "k", {"v": 1})
    assert lg.memory.list(limit=None) == []


def test_bad_values_are_refused_with_the_reason(lg: MemoryBaseStore):
    with pytest.raises(ValueError, match="mapping"):
        lg.batch([PutOp(("a",), "k", ["not", "a", "dict"])])
    with pytest.raises(ValueError, match="JSON-serialisable"):
        lg.put(("a",), "k", {"when": object()})
    with pytest.raises(ValueError, match="at most 20,000"):
        lg.put(("a",), "k", {"text": "x" * 30_000, "extra": 1})
    with pytest.raises(ValueError, match="too long"):
        lg.put(("a",), "k" * 300, {"v": 1})
    with pytest.raises(NotImplementedError, match="TTL"):
        lg.put(("a",), "k", {"v": 1}, ttl=5)
    with pytest.raises(ValueError, match="index=\\['title'\\] is not supported"):
        lg.put(("a",), "k", {"title": "t", "body": "b"}, index=["title"])
    assert lg.memory.list(limit=None) == []


# ---------------------------------------------------------------------------- search
def test_search_by_prefix_and_filters(filled: MemoryBaseStore):
    keys = lambda items: sorted(i.key for i in items)  # noqa: E731
    assert keys(filled.search(())) == ["a", "b", "c", "d", "u1"]
    assert keys(filled.search(("docs",))) == ["a", "b", "c", "d"]
    assert keys(filled.search(("docs", "u2"))) == ["c", "d"]
    assert keys(filled.search(("docs", "u2", "drafts"))) == ["d"]
    assert filled.search(("doc",)) == []  # a prefix is whole labels, not characters
    assert keys(filled.search(("docs",), filter={"kind": "note"})) == ["c", "d"]
    assert keys(filled.search(("docs",), filter={"kind": "article", "color": "red"})) == ["a"]
    assert keys(filled.search(("docs",), filter={"meta": {"lang": "en"}})) == ["a", "c"]
    assert keys(filled.search(("docs",), filter={"score": {"$gt": 4}})) == ["a", "c"]
    assert keys(filled.search(("docs",), filter={"score": {"$gte": 4.5}})) == ["a", "c"]
    assert keys(filled.search(("docs",), filter={"score": {"$lt": 3}})) == ["d"]
    assert keys(filled.search(("docs",), filter={"score": {"$lte": 3}})) == ["b", "d"]
    assert keys(filled.search(("docs",), filter={"color": {"$ne": "red"}})) == ["b", "d"]
    assert keys(filled.search(("docs",), filter={"color": {"$eq": "red"}, "score": {"$gte": 3.0, "$lt": 5}})) == ["c"]
    assert keys(filled.search(("docs",), filter={"missing": {"$gt": 1}})) == []
    with pytest.raises(ValueError, match="unsupported filter operator '\\$regex'"):
        filled.search(("docs",), filter={"color": {"$regex": "r.*"}})
    assert all(i.score is None for i in filled.search(("docs",)))


def test_search_limit_and_offset_page_without_overlap(filled: MemoryBaseStore):
    pages = [filled.search(("docs",), limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 0]
    assert [i.key for p in pages for i in p] == ["a", "b", "c", "d"]  # creation order
    assert [i.key for i in filled.search(("docs",), filter={"color": "red"}, limit=1, offset=1)] == ["c"]
    assert filled.search(("docs",), limit=0) == []
    with pytest.raises(ValueError, match="limit and offset"):
        filled.search(("docs",), limit=-1)


def test_query_search_ranks_by_similarity_within_prefix_and_filter(filled: MemoryBaseStore):
    hits = filled.search(("docs",), query="solar panels")
    assert hits[0].key == "a" and hits[1].key == "c"
    assert all(hits[n].score >= hits[n + 1].score for n in range(len(hits) - 1))
    assert [h.key for h in filled.search(("docs", "u2"), query="solar panels")][:1] == ["c"]
    assert [h.key for h in filled.search(("docs",), query="solar panels", filter={"lang": "nope"})] == []
    assert [h.key for h in filled.search(("docs",), query="solar panels", filter={"meta": {"lang": "en"}})] == ["a", "c"]
    assert [h.key for h in filled.search(("docs",), query="solar panels", limit=1, offset=1)] == ["c"]
    assert filled.search(("users",), query="solar panels")[0].key == "u1"  # only what is under the prefix


def test_query_search_widens_past_items_outside_the_prefix(lg: MemoryBaseStore):
    for n in range(30):
        lg.put(("noise",), f"n{n}", {"text": f"solar solar solar panels {n}"})
    lg.put(("target",), "t", {"text": "solar panels manual"})
    assert [h.key for h in lg.search(("target",), query="solar solar solar panels", limit=1)] == ["t"]


def test_index_false_leaves_an_item_out_of_query_searches_only(lg: MemoryBaseStore):
    lg.put(("docs",), "hidden", {"text": "solar panels"}, index=False)
    lg.put(("docs",), "shown", {"text": "solar power"})
    assert [h.key for h in lg.search(("docs",), query="solar panels")] == ["shown"]
    assert sorted(i.key for i in lg.search(("docs",))) == ["hidden", "shown"]
    assert lg.get(("docs",), "hidden").value == {"text": "solar panels"}
    lg.put(("docs",), "hidden", {"text": "solar panels"})  # indexed again
    assert [h.key for h in lg.search(("docs",), query="solar panels")][0] == "hidden"


# ---------------------------------------------------------------------------- namespaces
def test_list_namespaces(lg: MemoryBaseStore):
    for ns in (("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"), ("a", "c", "f"), ("x", "v1")):
        lg.put(ns, "k", {"v": 1})
    assert lg.list_namespaces() == [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"), ("a", "c", "f"), ("x", "v1")]
    assert lg.list_namespaces(prefix=("a", "b"), max_depth=3) == [("a", "b", "c"), ("a", "b", "d"), ("a", "b", "f")]
    assert lg.list_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f")]
    assert lg.list_namespaces(prefix=("a", "*", "f")) == [("a", "b", "f"), ("a", "c", "f")]
    assert lg.list_namespaces(suffix=("*", "v1")) == [("x", "v1")]
    assert lg.list_namespaces(prefix=("a",), suffix=("e",)) == [("a", "b", "d", "e")]
    assert lg.list_namespaces(max_depth=1) == [("a",), ("x",)]
    assert lg.list_namespaces(limit=2, offset=1) == [("a", "b", "d", "e"), ("a", "b", "d", "i")]
    lg.delete(("x", "v1"), "k")
    assert ("x", "v1") not in lg.list_namespaces()  # a namespace with nothing live in it is gone
    with pytest.raises(ValueError, match="max_depth"):
        lg.batch([ListNamespacesOp(max_depth=0)])


# ---------------------------------------------------------------------------- batch and async twins
def test_batch_runs_ops_in_order_and_checks_them_all_first(lg: MemoryBaseStore):
    results = lg.batch([
        PutOp(("b",), "k", {"v": 1}),
        GetOp(("b",), "k"),
        SearchOp(("b",), filter={"v": 1}),
        ListNamespacesOp(),
        PutOp(("b",), "k", None),
        GetOp(("b",), "k"),
    ])
    assert results[0] is None and results[1].value == {"v": 1} and [i.key for i in results[2]] == ["k"]
    assert results[3] == [("b",)] and results[4] is None and results[5] is None
    with pytest.raises(InvalidNamespaceError):
        lg.batch([PutOp(("ok",), "k", {"v": 1}), PutOp(("bad.label",), "k", {"v": 1})])
    assert lg.get(("ok",), "k") is None  # the good op before the bad one did not run
    with pytest.raises(ValueError, match="unknown operation type"):
        lg.batch(["not an op"])


def test_async_twins_match_sync(filled: MemoryBaseStore):
    async def main():
        await filled.aput(("async",), "k", {"text": "solar async"})
        got = await filled.aget(("async",), "k")
        found = await filled.asearch(("docs",), filter={"score": {"$gt": 4}})
        ranked = await filled.asearch(("docs",), query="solar panels", limit=2)
        namespaces = await filled.alist_namespaces(prefix=("docs",), max_depth=2)
        batch = await filled.abatch([GetOp(("users",), "u1"), SearchOp(("docs", "u1"), limit=1)])
        await filled.adelete(("async",), "k")
        gone = await filled.aget(("async",), "k")
        together = await asyncio.gather(*(filled.aput(("many",), f"k{n}", {"n": n}) for n in range(8)))
        return got, found, ranked, namespaces, batch, gone, together

    got, found, ranked, namespaces, batch, gone, together = asyncio.run(main())
    assert got.value == {"text": "solar async"} and gone is None and together == [None] * 8
    assert [i.key for i in found] == [i.key for i in filled.search(("docs",), filter={"score": {"$gt": 4}})]
    assert [i.key for i in ranked] == [i.key for i in filled.search(("docs",), query="solar panels", limit=2)]
    assert namespaces == filled.list_namespaces(prefix=("docs",), max_depth=2) == [("docs", "u1"), ("docs", "u2")]
    assert batch[0].value == {"name": "Alice"} and [i.key for i in batch[1]] == ["a"]
    assert sorted(i.value["n"] for i in filled.search(("many",), limit=20)) == list(range(8))


# ---------------------------------------------------------------------------- what the memory keeps
def test_versions_history_soft_delete_restore_and_track_record(lg: MemoryBaseStore):
    ns = ("memories", "u1")
    lg.put(ns, "m", {"content": "likes tea"})
    lg.put(ns, "m", {"content": "likes green tea"})
    lg.put(ns, "m", {"content": "likes green tea"})  # an identical put is not a new version
    lg.delete(ns, "m")
    pamphlet = lg.pamphlet(ns, "m")
    assert pamphlet.deleted and lg.memory.get(pamphlet.id).deleted  # soft: still in SQL
    assert lg.restore(ns, "m").value == {"content": "likes green tea"}
    lg.delete(ns, "m")
    lg.put(ns, "m", {"content": "likes coffee"})  # a put after a delete brings the same pamphlet back
    assert lg.pamphlet(ns, "m").id == pamphlet.id
    assert [v.change for v in lg.history(ns, "m")] == ["created", "edited", "deleted", "restored", "deleted", "restored", "edited"]
    assert all(v.changed_by == "langgraph" for v in lg.history(ns, "m"))
    lg.record_use(ns, "m", "episode-1", 1.0)
    lg.record_use(ns, "m", "episode-2", 0.0)
    record = lg.track_record(ns, "m")
    assert (record.uses, record.mean_reward) == (2, 0.5)
    with pytest.raises(MemoryStoreError, match="reward must be"):
        lg.record_use(ns, "m", "episode-3", 7.0)
    with pytest.raises(MemoryStoreError, match="no item 'zz'"):
        lg.history(ns, "zz")


def test_pamphlets_written_outside_langgraph_are_items(lg: MemoryBaseStore):
    native = lg.memory.add({"text": "follow the alert's account to SigninLogs", "tags": ["benchmark:soc"], "cue": "sign-in"})
    key = str(native.id)
    item = lg.get(("student", "benchmark:soc"), key)
    assert item.value == {"text": "follow the alert's account to SigninLogs", "cue": "sign-in"}
    assert lg.search(("student",), query="SigninLogs account")[0].key == key
    assert ("student", "benchmark:soc") in lg.list_namespaces()
    lg.put(("student", "benchmark:soc"), key, {"text": "follow the account to SigninLogs and AuditLogs"})
    assert lg.memory.get(native.id).version == 2 and lg.memory.get(native.id).tags == ["benchmark:soc"]
    assert lg.get(("student", "other"), key) is None  # the id alone does not reach it from elsewhere


def test_default_audience_is_checked(tmp_path: Path):
    memory = MemoryStore.open(tmp_path / "m.sqlite", embedder="hash:64", index_dir=tmp_path / "idx")
    with pytest.raises(MemoryStoreError, match="default_audience"):
        MemoryBaseStore(memory, default_audience="admin")
    memory.close()


# ---------------------------------------------------------------------------- a real graph
def _graph(store: MemoryBaseStore):
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph
    from langgraph.runtime import Runtime

    class State(TypedDict, total=False):
        user: str
        fact: str
        recalled: list[str]

    def remember(state: State, runtime: Runtime) -> dict:
        if state.get("fact"):
            runtime.store.put(("memories", state["user"]), str(uuid.uuid5(uuid.NAMESPACE_OID, state["fact"])), {"text": state["fact"]})
        return {}

    def recall(state: State, runtime: Runtime) -> dict:
        hits = runtime.store.search(("memories", state["user"]), query="what drink does the user like", limit=3)
        return {"recalled": [h.value["text"] for h in hits]}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_node("recall", recall)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    builder.add_edge("recall", END)
    return builder.compile(store=store)


def test_graph_nodes_read_and_write_through_runtime_store(store_target: str, tmp_path: Path):
    with MemoryBaseStore.open(store_target, embedder="hash:256", index_dir=tmp_path / "indexes") as store:
        graph = _graph(store)
        graph.invoke({"user": "ann", "fact": "ann likes green tea to drink"})
        graph.invoke({"user": "bob", "fact": "bob likes black coffee to drink"})
        out = asyncio.run(graph.ainvoke({"user": "ann", "fact": "ann walks her dog daily"}))
        assert out["recalled"][0] == "ann likes green tea to drink" and len(out["recalled"]) == 2
    # a new process opening the same memory sees what the graph wrote, as pamphlets with history
    with MemoryBaseStore.open(store_target, index_dir=tmp_path / "indexes") as reopened:
        assert _graph(reopened).invoke({"user": "bob"})["recalled"] == ["bob likes black coffee to drink"]
        assert reopened.list_namespaces(prefix=("memories",)) == [("memories", "ann"), ("memories", "bob")]
        pamphlets = reopened.memory.list(tags=["memories"], limit=None)
        assert len(pamphlets) == 3 and all(p.provenance.source == "langgraph" for p in pamphlets)


# ---------------------------------------------------------------------------- langmem
def test_langmem_memory_tools_on_the_adapter(lg: MemoryBaseStore):
    langmem = pytest.importorskip("langmem", reason="langmem is a dev dependency (pip install -e '.[dev]')")
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    manage = langmem.create_manage_memory_tool(namespace=("memories", "{langgraph_user_id}"))
    search = langmem.create_search_memory_tool(namespace=("memories", "{langgraph_user_id}"))

    class State(TypedDict, total=False):
        calls: list[tuple[str, dict]]
        outputs: list

    def use_tools(state: State) -> dict:
        tools = {"manage": manage, "search": search}
        return {"outputs": [tools[name].invoke(args) for name, args in state["calls"]]}

    builder = StateGraph(State)
    builder.add_node("use_tools", use_tools)
    builder.add_edge(START, "use_tools")
    builder.add_edge("use_tools", END)
    graph = builder.compile(store=lg)
    config = {"configurable": {"langgraph_user_id": "u-42"}}

    created = graph.invoke({"calls": [("manage", {"content": "prefers dark mode in the editor"}),
                                      ("manage", {"content": "works in Berlin"})]}, config)["outputs"]
    memory_id = created[0].split()[-1]
    assert created[0].startswith("created memory")
    found = graph.invoke({"calls": [("search", {"query": "dark mode editor", "limit": 1})]}, config)["outputs"][0]
    assert "prefers dark mode in the editor" in found and memory_id in found
    graph.invoke({"calls": [("manage", {"content": "prefers light mode", "action": "update", "id": memory_id})]}, config)
    assert lg.get(("memories", "u-42"), memory_id).value == {"content": "prefers light mode"}
    graph.invoke({"calls": [("manage", {"action": "delete", "id": memory_id})]}, config)
    assert lg.get(("memories", "u-42"), memory_id) is None
    assert [v.change for v in lg.history(("memories", "u-42"), memory_id)] == ["created", "edited", "deleted"]
    assert [i.value for i in lg.search(("memories", "u-42"))] == [{"content": "works in Berlin"}]
