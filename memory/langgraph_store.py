"""LangGraph's ``BaseStore`` over the learning memory, so a graph compiled with ``store=`` reads and
writes pamphlets through ``runtime.store``.

Every put is a pamphlet version (history kept), a delete is a soft delete (``restore`` brings the
item back, and a later put of the same key restores it with a new version), and each item keeps
its pamphlet's track record. How namespaces, keys and values map is in ``memory.langgraph_items``.

Semantics where LangGraph leaves them to the store: operations in one batch run in order (a get
after a put in the same batch sees it); every op of a batch is validated before any of them
runs; searches without a query return items in creation order (pamphlet id); query searches rank
by cosine similarity (``score``) and leave out items put with ``index=False``; TTLs are not
supported (``supports_ttl`` is False, a put with a TTL is refused).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    validate_op_namespace,
)

from memory import langgraph_items as li
from memory.errors import MemoryStoreError
from memory.schema import AUDIENCES, Pamphlet, PamphletIn, PamphletVersion, TrackRecord
from memory.store import MemoryStore

PAGE = 500  # pamphlets read per page while scanning a namespace


@dataclass(frozen=True)
class _Put:
    """A validated put: the pamphlet fields it writes."""

    op: PutOp
    fields: dict[str, Any]
    flags: list[str]


class MemoryBaseStore(BaseStore):
    """A LangGraph store whose items are pamphlets of a :class:`MemoryStore`.

    ``default_audience`` is the audience of items whose namespace does not start with
    ``student`` or ``teacher``; ``changed_by`` names this writer in the pamphlets' history."""

    supports_ttl = False

    def __init__(self, memory: MemoryStore, default_audience: str = "student", changed_by: str = "langgraph") -> None:
        if default_audience not in AUDIENCES:
            raise MemoryStoreError(f"default_audience must be one of {', '.join(AUDIENCES)}, got {default_audience!r}")
        self.memory = memory
        self.default_audience = default_audience
        self.changed_by = changed_by
        self._owns_memory = False
        self._lock = threading.RLock()  # the store's index cache is not shared across threads safely

    @classmethod
    def open(cls, target: str | Path, embedder: Any = None, index_dir: Path = Path(".atlas/indexes"), **options: Any) -> MemoryBaseStore:
        """Open the memory at a SQLite path or SQLAlchemy URL; :meth:`close` closes it."""
        self = cls(MemoryStore.open(target, embedder=embedder, index_dir=index_dir), **options)
        self._owns_memory = True
        return self

    def close(self) -> None:
        if self._owns_memory:
            self.memory.close()

    def __enter__(self) -> MemoryBaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ BaseStore
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        prepared = [self._prepare(op, n) for n, op in enumerate(ops)]  # all checked before any runs
        with self._lock:
            return [self._run(op) for op in prepared]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self.batch, list(ops))

    def _prepare(self, op: Op, n: int) -> Op | _Put:
        if not isinstance(op, (GetOp, PutOp, SearchOp, ListNamespacesOp)):
            raise ValueError(f"operation {n}: unknown operation type {type(op).__name__}")
        validate_op_namespace(op)
        if isinstance(op, SearchOp):
            _check_window(op.limit, op.offset, f"operation {n} (search)")
        if isinstance(op, ListNamespacesOp):
            _check_window(op.limit, op.offset, f"operation {n} (list_namespaces)")
            if op.max_depth is not None and op.max_depth < 1:
                raise ValueError(f"operation {n} (list_namespaces): max_depth must be at least 1, got {op.max_depth}")
        if not isinstance(op, PutOp):
            return op
        where = f"operation {n} (put {op.namespace}/{op.key!r})"
        if not op.namespace:
            raise ValueError(f"{where}: the namespace must not be empty")
        li.check_labels(op.namespace)
        li.namespace_tag(op.namespace)
        li.key_tag(op.key)
        if op.value is None:
            return _Put(op, {}, [])
        if op.ttl is not None:
            raise NotImplementedError(f"{where}: TTLs are not supported by {type(self).__name__}; put it with ttl=None")
        fields, as_json = li.value_fields(op.value, where)
        whole = [["$"]] if as_json else [["$"], ["text"]]  # what the one vector per pamphlet covers
        if isinstance(op.index, list) and list(op.index) not in whole:
            raise ValueError(
                f"{where}: index={op.index!r} is not supported: the memory keeps one vector per pamphlet, of "
                "its whole text; pass index=None (embed the whole item), index=False (leave it out of query "
                "searches), or put the text to embed under 'text'"
            )
        flags = ([li.JSON_TAG] if as_json else []) + ([li.NOINDEX_TAG] if op.index is False else [])
        audience, scope = li.audience_and_scope(op.namespace, self.default_audience)
        PamphletIn.model_validate({**fields, "audience": audience, "tags": scope + flags})  # bad input fails here, before any write
        return _Put(op, fields, flags)

    def _run(self, op: Op | _Put) -> Result:
        if isinstance(op, GetOp):
            found = self._find(op.namespace, op.key)
            return _item(found) if found is not None and not found.deleted else None
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return self._list_namespaces(op)
        assert isinstance(op, _Put)
        if op.op.value is None:
            self._delete(op.op.namespace, op.op.key)
        else:
            self._put(op)
        return None

    # ------------------------------------------------------------------ writes
    def _put(self, put: _Put) -> None:
        namespace, key = put.op.namespace, put.op.key
        existing = self._find(namespace, key)
        if existing is None:
            audience, scope = li.audience_and_scope(namespace, self.default_audience)
            tags = scope + [li.namespace_tag(namespace), li.key_tag(key)] + put.flags
            self.memory.add(
                {**put.fields, "audience": audience, "tags": tags, "provenance": {"source": "langgraph"}},
                changed_by=self.changed_by,
            )
            return
        if existing.deleted:
            self.memory.restore(existing.id, changed_by=self.changed_by)
        kept = [tag for tag in existing.tags if tag not in li.FLAG_TAGS]
        self.memory.update(existing.id, text=put.fields["text"], plan=put.fields["plan"], cue=put.fields["cue"],
                           tags=kept + put.flags, changed_by=self.changed_by)

    def _delete(self, namespace: tuple[str, ...], key: str) -> None:
        found = self._find(namespace, key)
        if found is not None and not found.deleted:
            self.memory.delete(found.id, changed_by=self.changed_by)

    # ------------------------------------------------------------------ reads
    def _find(self, namespace: tuple[str, ...], key: str) -> Pamphlet | None:
        """The pamphlet at (namespace, key): the live one, else the latest deleted one."""
        tagged = self.memory.list(tags=[li.namespace_tag(namespace), li.key_tag(key)], include_deleted=True, limit=None)
        if tagged:
            live = [p for p in tagged if not p.deleted]
            return live[0] if live else tagged[-1]
        if key.isdigit():  # a pamphlet written outside LangGraph is keyed by its id
            native = self.memory.get_many([int(key)])
            if native and li.is_native(native[0]) and li.item_namespace(native[0]) == tuple(namespace):
                return native[0]
        return None

    def _under(self, prefix: tuple[str, ...]) -> Callable[[Pamphlet], bool]:
        n = len(prefix)
        return lambda p: li.item_namespace(p)[:n] == tuple(prefix)

    def _scan(self, prefix: tuple[str, ...]) -> Iterator[Pamphlet]:
        """Live pamphlets under a namespace prefix, in id order, a page at a time."""
        audience, tags = li.scope_filter(prefix)
        under = self._under(prefix)
        offset = 0
        while True:
            page = self.memory.list(audience=audience, tags=tags, limit=PAGE, offset=offset)
            yield from (p for p in page if under(p))
            if len(page) < PAGE:
                return
            offset += PAGE

    def _search(self, op: SearchOp) -> list[SearchItem]:
        wanted = op.offset + op.limit
        if not op.query:
            matched: list[SearchItem] = []
            for pamphlet in self._scan(op.namespace_prefix):
                value = li.item_value(pamphlet)
                if li.matches_filter(value, op.filter):
                    matched.append(_item(pamphlet, value=value, search=True))
                    if len(matched) >= wanted:
                        break
            return matched[op.offset : wanted]
        audience, tags = li.scope_filter(op.namespace_prefix)
        under = self._under(op.namespace_prefix)
        vector = self.memory.embedder.encode([op.query])[0]
        k = max(wanted, 10)
        while True:  # widen the vector search until enough hits pass the exact namespace and value filters
            hits = self.memory.search_vector(vector, k=k, audience=audience, tags=tags)
            scored = [
                _item(h.pamphlet, score=h.score, search=True)
                for h in hits
                if under(h.pamphlet) and li.NOINDEX_TAG not in h.pamphlet.tags
                and li.matches_filter(li.item_value(h.pamphlet), op.filter)
            ]
            if len(scored) >= wanted or len(hits) < k:
                return scored[op.offset : wanted]
            k *= 4

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        conditions = list(op.match_conditions or ())
        prefix: tuple[str, ...] = ()
        for condition in conditions:  # the concrete head of a prefix condition narrows the scan
            if condition.match_type == "prefix":
                head = []
                for label in condition.path:
                    if label == "*":
                        break
                    head.append(label)
                prefix = max(prefix, tuple(head), key=len)
        namespaces = {li.item_namespace(p) for p in self._scan(prefix)}
        namespaces = {ns for ns in namespaces if all(li.namespace_matches(ns, c) for c in conditions)}
        if op.max_depth is not None:
            namespaces = {ns[: op.max_depth] for ns in namespaces}
        return sorted(namespaces)[op.offset : op.offset + op.limit]

    # ------------------------------------------------------------------ what pamphlets add to items
    def pamphlet(self, namespace: tuple[str, ...], key: str) -> Pamphlet | None:
        """The pamphlet behind an item (deleted ones too: ``deleted`` says which)."""
        with self._lock:
            return self._find(tuple(namespace), str(key))

    def _require(self, namespace: tuple[str, ...], key: str) -> Pamphlet:
        found = self.pamphlet(namespace, key)
        if found is None:
            raise MemoryStoreError(f"no item {key!r} in namespace {tuple(namespace)} in {self.memory.target}")
        return found

    def history(self, namespace: tuple[str, ...], key: str) -> list[PamphletVersion]:
        """Every version of an item, oldest first, including deletes and restores."""
        return self.memory.history(self._require(namespace, key).id)

    def restore(self, namespace: tuple[str, ...], key: str) -> Item:
        """Undo a delete: the item comes back as it was, with a new version."""
        with self._lock:
            return _item(self.memory.restore(self._require(namespace, key).id, changed_by=self.changed_by))

    def record_use(self, namespace: tuple[str, ...], key: str, episode_id: str, reward: float) -> None:
        """Add to the item's track record: an episode used it and got this reward (in [0, 1])."""
        with self._lock:
            self.memory.record_use(self._require(namespace, key).id, episode_id, reward)

    def track_record(self, namespace: tuple[str, ...], key: str) -> TrackRecord:
        return self.memory.track_record(self._require(namespace, key).id)


def _check_window(limit: int, offset: int, where: str) -> None:
    if not isinstance(limit, int) or limit < 0 or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"{where}: limit and offset must be whole numbers >= 0, got limit={limit!r}, offset={offset!r}")


def _item(pamphlet: Pamphlet, value: dict[str, Any] | None = None, score: float | None = None, search: bool = False) -> Any:
    fields: dict[str, Any] = dict(
        namespace=li.item_namespace(pamphlet),
        key=li.item_key(pamphlet),
        value=li.item_value(pamphlet) if value is None else value,
        created_at=pamphlet.created_at,
        updated_at=pamphlet.updated_at,
    )
    return SearchItem(**fields, score=score) if search else Item(**fields)
