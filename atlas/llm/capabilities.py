"""What an endpoint offers beyond plain text: native tool calls and JSON-schema structured outputs.

Decided once per client: forced by settings (`openai.tools`, `openai.structured_outputs`: on/off), declared
by the backend (the local model decodes under a schema), found by a cheap probe (one tiny forced tool
call, one tiny schema-constrained reply), or given by a process that probed the same model (`assume`: a
Ray driver for its actors). The probe is also the preflight: a refused key, an unknown model or an
unreachable endpoint fails here, before a run changes anything.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from atlas.errors import LLMConfigError, LLMError, LLMRejected
from atlas.llm.types import JsonSchemaFormat, ToolSpec

if TYPE_CHECKING:
    from atlas.llm.client import LLMClient

log = logging.getLogger(__name__)

PING = ToolSpec(
    name="ping",
    description="Answer the ping.",
    parameters={"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"], "additionalProperties": False},
)
YES_NO = JsonSchemaFormat(
    name="yes_no",
    schema={"type": "object", "properties": {"yes": {"type": "boolean"}}, "required": ["yes"], "additionalProperties": False},
)


@dataclass(frozen=True)
class Capabilities:
    tools: bool
    json_schema: bool
    how: str  # "probed", "settings", "backend", "given"
    schema_form: str | None = None  # how the endpoint took a JSON schema when probed: "json_schema" (OpenAI) or "json_object" (llama.cpp)

    @property
    def mode(self) -> str:
        """How agents talk to this model: `tools` (native tool calls), `json-schema` or `text` (parsed JSON)."""
        return "tools" if self.tools else "json-schema" if self.json_schema else "text"


def capabilities_of(client: LLMClient) -> Capabilities:
    """The client's capabilities, decided on first use and kept on the client."""
    known = getattr(client, "_capabilities", None)
    if known is None:
        known = _decide(client)
        client._capabilities = known  # type: ignore[attr-defined]
    return known


def _decide(client: LLMClient) -> Capabilities:
    declared = getattr(client.backend, "capabilities", None)
    if isinstance(declared, Capabilities):
        return declared
    settings = getattr(client.backend, "settings", None)
    tools_setting = getattr(settings, "tools", "off")
    schema_setting = getattr(settings, "structured_outputs", "off")
    if tools_setting == "auto" or schema_setting == "auto":
        tools = _probe_tools(client) if tools_setting == "auto" else tools_setting == "on"
        schema = _probe_schema(client) if schema_setting == "auto" else schema_setting == "on"
        return Capabilities(tools, schema, "probed", getattr(client.backend, "schema_form", None) if schema else None)
    return Capabilities(tools_setting == "on", schema_setting == "on", "settings")


def _probe_tools(client: LLMClient) -> bool:
    try:
        reply = client.chat([{"role": "user", "content": "Call the ping tool with word set to ok."}], max_tokens=32, tools=(PING,), tool_choice="ping")
    except LLMRejected as refused:
        log.info("%s: no native tool calls (%s)", client.model, refused)
        return False
    # a call of the forced tool came back: the server does tool calls (how well the model fills the
    # arguments is the model's matter, handled by repair turns like any other reply)
    return bool(reply.tool_calls) and reply.tool_calls[0].name == "ping"


def _probe_schema(client: LLMClient) -> bool:
    """OpenAI's `json_schema` form first; where the server refuses it, llama.cpp's `json_object` + `schema`."""
    forms = ["json_schema", "json_object"] if hasattr(client.backend, "schema_form") else ["json_schema"]
    for form in forms:
        if hasattr(client.backend, "schema_form"):
            client.backend.schema_form = form
        try:
            reply = client.chat([{"role": "user", "content": "Is two more than one? Reply in JSON."}], max_tokens=32, response_format=YES_NO)
        except LLMRejected as refused:
            log.info("%s: no JSON-schema outputs in the %s form (%s)", client.model, form, refused)
            continue
        return _is_yes_no(reply.text)
    return False


def _is_yes_no(text: str) -> bool:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and isinstance(value.get("yes"), bool)


def assume(client: LLMClient, known: Capabilities) -> None:
    """Take what another process found for the same model and endpoint instead of probing again (the
    preflight then makes one tiny call, which proves that this host reaches the model)."""
    if known.schema_form is not None and hasattr(client.backend, "schema_form"):
        client.backend.schema_form = known.schema_form
    client._capabilities = replace(known, how="given")  # type: ignore[attr-defined]


def preflight(client: LLMClient) -> Capabilities:
    """Check that the model answers at all, and decide its capabilities; any failure is a configuration error."""
    if getattr(client, "_preflighted", False):
        return capabilities_of(client)
    try:
        capabilities = capabilities_of(client)
        if capabilities.how != "probed" and not client.backend.is_local:  # one tiny call proves key, model and endpoint
            client.chat([{"role": "user", "content": "Say ok."}], max_tokens=4)
    except LLMConfigError:
        raise
    except LLMError as error:
        raise LLMConfigError(f"preflight: model {client.model!r} did not answer: {error}") from None
    client._preflighted = True  # type: ignore[attr-defined]
    return capabilities
