"""Structured decoding for in-process models: tool calls and JSON-schema replies that are always valid.

The local model has no native tool calling, so a request with tools becomes a JSON-schema reply
`{"name": <tool>, "arguments": {...}}` (the tools are described in the system prompt), decoded under
that schema by outlines' logits processor, and turned back into a tool call. String fields get a
maximum length so that a small model cannot ramble past its completion cap inside a string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from atlas.llm.types import ChatMessage, GenerationParams, ToolCall, ToolSpec

MAX_STRING_CHARS = 400  # per string field of a schema-decoded reply, at most


def string_fields(schema: Any) -> int:
    """How many string fields a schema has (every branch of anyOf counted: a bound for one reply)."""
    if isinstance(schema, list):
        return max((string_fields(x) for x in schema), default=0)
    if not isinstance(schema, dict):
        return 0
    if "anyOf" in schema or "oneOf" in schema:
        return string_fields(schema.get("anyOf") or schema.get("oneOf"))
    own = 1 if schema.get("type") == "string" and "enum" not in schema and "const" not in schema else 0
    return own + sum(string_fields(v) for v in (schema.get("properties") or {}).values()) + string_fields(schema.get("items"))


def chars_for(schema: dict[str, Any], max_tokens: int) -> int:
    """A per-string length that keeps a whole reply inside `max_tokens`, whatever the text: one token per
    character is the worst case (digits and punctuation), after ~40 tokens of JSON structure, shared by
    the schema's string fields."""
    budget = max(16, max_tokens - 40)
    return max(8, min(MAX_STRING_CHARS, budget // max(1, string_fields(schema))))


def bounded(schema: dict[str, Any], max_chars: int = MAX_STRING_CHARS) -> dict[str, Any]:
    """The schema with a maxLength on every string, recursively (keeps decoding inside the token cap)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {k: bounded(v, max_chars) if isinstance(v, dict) else [bounded(x, max_chars) for x in v] if isinstance(v, list) else v for k, v in schema.items()}
    if out.get("type") == "string" and "enum" not in out and "const" not in out:
        out.setdefault("maxLength", max_chars)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: bounded(v, max_chars) for k, v in out["properties"].items()}
    return out


def tool_choice_schema(params: GenerationParams) -> dict[str, Any]:
    """The reply shape for a request with tools: one call of an allowed tool, with its arguments."""
    tools = [t for t in params.tools if params.tool_choice in ("auto", "required", "none") or t.name == params.tool_choice]
    options = [
        {"type": "object", "properties": {"name": {"const": t.name}, "arguments": t.parameters}, "required": ["name", "arguments"], "additionalProperties": False}
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tool_reply(text: str, params: GenerationParams, call_id: str) -> ToolCall | None:
    """The tool call a schema-decoded reply stands for (None if the text is not one)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    names = {t.name for t in params.tools}
    if not isinstance(data, dict) or data.get("name") not in names or not isinstance(data.get("arguments"), dict):
        return None
    return ToolCall(id=call_id, name=data["name"], arguments=json.dumps(data["arguments"]))


def plain_messages(messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> list[ChatMessage]:
    """Messages a plain chat template can render: tool calls as JSON text, tool results as user turns, tools listed."""
    out = []
    for message in messages:
        if message.tool_calls:
            call = message.tool_calls[0]
            out.append(ChatMessage(role="assistant", content=json.dumps({"name": call.name, "arguments": json.loads(call.arguments or "{}")})))
        elif message.role == "tool":
            out.append(ChatMessage(role="user", content=f"Tool result:\n{message.content}"))
        else:
            out.append(ChatMessage(role=message.role, content=message.content))
    if tools:
        listing = "\n".join(f"- {t.name}: {t.description} Arguments: {', '.join(t.parameters.get('properties', {}))}" for t in tools)
        note = f'Tools you can call (reply with {{"name": ..., "arguments": {{...}}}}):\n{listing}'
        if out and out[0].role == "system":
            out[0] = ChatMessage(role="system", content=f"{out[0].content}\n{note}")
        else:
            out.insert(0, ChatMessage(role="system", content=note))
    return out


class SchemaDecoder:
    """Builds (and keeps, per schema) outlines logits processors for one model and tokenizer."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._wrapped: Any = None
        self._processors: dict[str, Any] = {}

    def processor(self, schema: dict[str, Any], max_tokens: int | None = None) -> Any:
        from transformers import LogitsProcessorList

        limit = chars_for(schema, max_tokens) if max_tokens else MAX_STRING_CHARS
        key = json.dumps(bounded(schema, limit), sort_keys=True)
        if key not in self._processors:
            import outlines
            from outlines.backends import get_json_schema_logits_processor

            if self._wrapped is None:
                self._wrapped = outlines.from_transformers(self._model, self._tokenizer)
            self._processors[key] = get_json_schema_logits_processor("outlines_core", self._wrapped, key, whitespace_pattern=r"[ ]?")
        processor = self._processors[key]
        processor.reset()
        return LogitsProcessorList([processor])
