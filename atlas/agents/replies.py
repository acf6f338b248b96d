"""Reading a model's reply as one JSON object, however it is wrapped.

Models put JSON in prose, in code fences, after a reasoning block, twice in one reply, or give a
bare number where a string was asked. The parser strips reasoning blocks, prefers a fenced block,
and takes the first *balanced* object (string-aware), so `{...} {...}` yields the first one and
braces inside strings do not confuse it. Scalars and lists where a schema wants text are coerced.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

Parsed = TypeVar("Parsed", bound=BaseModel)

REASONING = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
UNCLOSED_REASONING = re.compile(r"^\s*<(think|thinking|reasoning)>.*", re.DOTALL | re.IGNORECASE)
FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


class ReplyError(ValueError):
    """The reply holds no usable JSON object; the message says what was wrong (it is shown to the model)."""


def strip_reasoning(text: str) -> str:
    """The reply without <think>...</think> blocks (an unclosed one at the start swallows the rest)."""
    text = REASONING.sub("", text)
    return "" if UNCLOSED_REASONING.match(text) else text


def first_object(text: str) -> str:
    """The first balanced JSON object in the text, fenced blocks first."""
    cleaned = strip_reasoning(text)
    candidates = [m.group(1) for m in FENCE.finditer(cleaned)] + [cleaned]
    for candidate in candidates:
        found = _balanced(candidate)
        if found is not None:
            return found
    raise ReplyError("no JSON object found in the reply")


def _balanced(text: str) -> str | None:
    start = text.find("{")
    while start != -1:
        depth, in_string, escaped = 0, False, False
        for index in range(start, len(text)):
            char = text[index]
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    candidate = text[start : index + 1]
                    try:
                        json.loads(candidate)
                        return candidate
                    except json.JSONDecodeError:
                        break
        start = text.find("{", start + 1)
    return None


def as_text(value: Any) -> Any:
    """A scalar or list given where text is wanted, as text (42 -> "42", ["a", "b"] -> "a, b")."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return ", ".join(str(v) for v in value)
    return value


def parse_reply(text: str, schema: type[Parsed], text_fields: tuple[str, ...] = ()) -> Parsed:
    """The reply's first JSON object validated by `schema`; `text_fields` are coerced to text first."""
    try:
        data = json.loads(first_object(text))
    except ReplyError:
        raise
    if not isinstance(data, dict):
        raise ReplyError("the reply's JSON is not an object")
    for name in text_fields:
        if name in data:
            data[name] = as_text(data[name])
    return validate(data, schema)


def validate(data: dict[str, Any], schema: type[Parsed]) -> Parsed:
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise ReplyError(f"{where}: {first['msg']}") from None
