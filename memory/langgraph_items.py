"""How LangGraph store items (namespace, key, value) map onto pamphlets, and back.

- Namespace: a first label ``student`` or ``teacher`` is the pamphlet's audience (otherwise the
  adapter's default audience); every other label is also a scope tag, so ``("student",
  "benchmark:soc")`` is what the agents' own retrieval sees. The exact namespace is kept in a
  bookkeeping tag ``lg:ns=...`` (labels percent-encoded), so it survives any tag edits.
- Key: a bookkeeping tag ``lg:key=...``. A pamphlet written outside LangGraph (by the agents or
  the CLI) has no such tags: its namespace is ``(audience, *tags)`` and its key is its id.
- Value: ``{"text": ..., "plan": {...}, "cue": ...}`` maps onto those pamphlet fields; any other
  JSON object is kept whole as the pamphlet's text (tag ``lg:json``), which is also what gets
  embedded (LangGraph's default of embedding the whole item).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from langgraph.store.base import InvalidNamespaceError, MatchCondition

from memory.schema import AUDIENCES, MAX_TEXT_CHARS, Pamphlet

RESERVED_PREFIX = "lg:"
NS_PREFIX = "lg:ns="
KEY_PREFIX = "lg:key="
JSON_TAG = "lg:json"
NOINDEX_TAG = "lg:noindex"
FLAG_TAGS = (JSON_TAG, NOINDEX_TAG)
MAX_TAG_CHARS = 200  # the tags column is VARCHAR(200)
PAMPHLET_KEYS = frozenset({"text", "plan", "cue"})
OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")


def check_labels(namespace: tuple[str, ...]) -> None:
    """Labels become tags: no commas, no surrounding spaces, not the reserved ``lg:`` prefix."""
    for label in namespace:
        problem = None
        if "," in label:
            problem = "contains a comma, which memory tags cannot hold"
        elif label != label.strip():
            problem = "has leading or trailing spaces, which memory tags drop"
        elif label.startswith(RESERVED_PREFIX):
            problem = f"starts with {RESERVED_PREFIX!r}, which is reserved for the adapter's bookkeeping tags"
        elif len(label) > MAX_TAG_CHARS:
            problem = f"is longer than {MAX_TAG_CHARS} characters"
        if problem:
            raise InvalidNamespaceError(f"namespace label {label!r} in {namespace} {problem}")


def _bounded(tag: str, what: str) -> str:
    if len(tag) > MAX_TAG_CHARS:
        raise InvalidNamespaceError(
            f"{what} is too long for the memory: its tag {tag[:40]}... has {len(tag)} characters "
            f"(at most {MAX_TAG_CHARS}); use a shorter namespace or key"
        )
    return tag


def namespace_tag(namespace: tuple[str, ...]) -> str:
    return _bounded(NS_PREFIX + "/".join(quote(label, safe=":@") for label in namespace), f"namespace {namespace}")


def key_tag(key: str) -> str:
    return _bounded(KEY_PREFIX + quote(key, safe=":@"), f"key {key!r}")


def audience_and_scope(namespace: tuple[str, ...], default_audience: str) -> tuple[str, list[str]]:
    """The pamphlet audience and scope tags a namespace (or namespace prefix) stands for."""
    if namespace and namespace[0] in AUDIENCES:
        return namespace[0], list(namespace[1:])
    return default_audience, list(namespace)


def scope_filter(prefix: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """Store filters that every item under ``prefix`` passes (checked exactly afterwards)."""
    if prefix and prefix[0] in AUDIENCES:
        return prefix[0], list(prefix[1:])
    return None, list(prefix)


def item_namespace(pamphlet: Pamphlet) -> tuple[str, ...]:
    for tag in pamphlet.tags:
        if tag.startswith(NS_PREFIX):
            body = tag[len(NS_PREFIX):]
            return tuple(unquote(label) for label in body.split("/")) if body else ()
    return (pamphlet.audience, *[tag for tag in pamphlet.tags if not tag.startswith(RESERVED_PREFIX)])


def item_key(pamphlet: Pamphlet) -> str:
    for tag in pamphlet.tags:
        if tag.startswith(KEY_PREFIX):
            return unquote(tag[len(KEY_PREFIX):])
    return str(pamphlet.id)


def is_native(pamphlet: Pamphlet) -> bool:
    """Written outside LangGraph: no namespace or key bookkeeping tags."""
    return not any(tag.startswith((NS_PREFIX, KEY_PREFIX)) for tag in pamphlet.tags)


def item_value(pamphlet: Pamphlet) -> dict[str, Any]:
    if JSON_TAG in pamphlet.tags:
        return json.loads(pamphlet.text)
    value: dict[str, Any] = {"text": pamphlet.text}
    if pamphlet.plan is not None:
        value["plan"] = pamphlet.plan
    if pamphlet.cue:
        value["cue"] = pamphlet.cue
    return value


def _pamphlet_shaped(value: Mapping[str, Any]) -> bool:
    """Values that map field by field and come back exactly as they went in."""
    return (
        set(value) <= PAMPHLET_KEYS
        and isinstance(value.get("text"), str)
        and bool(value["text"].strip())
        and ("plan" not in value or isinstance(value["plan"], dict))
        and ("cue" not in value or (isinstance(value["cue"], str) and bool(value["cue"])))
    )


def value_fields(value: Mapping[str, Any], where: str) -> tuple[dict[str, Any], bool]:
    """Pamphlet fields (text, plan, cue) for a value, and whether the text holds the value as JSON."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: a value must be a mapping (a JSON object), got {type(value).__name__}")
    if _pamphlet_shaped(value):
        return {"text": value["text"], "plan": value.get("plan"), "cue": value.get("cue", "")}, False
    try:
        text = json.dumps(dict(value), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: the value is not JSON-serialisable ({exc})") from None
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(
            f"{where}: the value is {len(text):,} characters as JSON; a pamphlet holds at most "
            f"{MAX_TEXT_CHARS:,}: split it into several items"
        )
    return {"text": text, "plan": None, "cue": ""}, True


def namespace_matches(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    """LangGraph's prefix/suffix match, with ``*`` matching any one label."""
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path))
    else:
        raise ValueError(f"unknown namespace match type {condition.match_type!r}; expected 'prefix' or 'suffix'")
    return all(wanted == "*" or label == wanted for label, wanted in pairs)


def matches_filter(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """LangGraph's filter semantics: exact matches (nested objects, lists) and $eq/$ne/$gt/$gte/$lt/$lte."""
    return not filter or all(_matches(value.get(field), wanted) for field, wanted in filter.items())


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        operators = [k for k in wanted if isinstance(k, str) and k.startswith("$")]
        if operators:
            return all(_apply(actual, op, operand) for op, operand in wanted.items())
        return isinstance(actual, Mapping) and all(_matches(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(wanted)
            and all(_matches(a, w) for a, w in zip(actual, wanted))
        )
    return actual == wanted


def _apply(actual: Any, operator: str, operand: Any) -> bool:
    if operator == "$eq":
        return actual == operand
    if operator == "$ne":
        return actual != operand
    if operator not in OPERATORS:
        raise ValueError(f"unsupported filter operator {operator!r}; expected one of {', '.join(OPERATORS)}")
    if not _comparable(actual, operand):
        return False  # a missing field or a mismatched type never satisfies an ordering
    if operator == "$gt":
        return actual > operand
    if operator == "$gte":
        return actual >= operand
    if operator == "$lt":
        return actual < operand
    return actual <= operand


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (isinstance(a, str) and isinstance(b, str))
