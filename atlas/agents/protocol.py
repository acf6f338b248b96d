"""One agent turn with a model, in the best form its endpoint offers.

`tools`: native tool calls (`tools`, `tool_choice`); observations go back as tool-role messages.
`json-schema`: the reply is constrained by a JSON schema (`response_format`); observations go back as
user messages inside a per-episode nonce delimiter. `text`: the same, with the reply parsed by the
robust parser. In every mode a reply that is not a valid action gets a bounded number of repair
turns (shared by the whole attempt); a reply cut off at the completion cap is one such case; a
context overflow compacts the conversation and retries once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from atlas.agents.context import Conversation, TokenEstimator
from atlas.agents.replies import ReplyError, as_text, parse_reply, validate
from atlas.errors import LLMContextOverflow
from atlas.llm.client import LLMClient
from atlas.llm.ledger import current_ledger
from atlas.llm.types import ChatMessage, JsonSchemaFormat, ToolCall, ToolSpec


CONTEXT_MARGIN = 64  # tokens kept free below a model's known context size


class GaveUp(Exception):
    """The model gave no usable action within the attempt's repair turns."""


# ---------------------------------------------------------------- actions the agents offer
class SqlArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    thought: str = Field("", description="your short notes")
    sql: str = Field(min_length=1, description="one read-only query")


class AnswerArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    thought: str = Field("", description="your short notes")
    answer: str = Field(min_length=1, description="just the value asked for")


class VerdictArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    rationale: str = Field(description="the evidence for the verdict, citing the query results")
    correct: bool = Field(description="is the answer supported by the evidence?")
    guidance: str = Field("", description="if not: what the analyst should do differently")


class ReviewArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    approve: bool = Field(description="should the analyst follow the approach?")
    guidance: str = Field("", description="advice for this investigation")


class LessonArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    applies_when: str = Field(description="the kind of task this lesson is for, in general terms")
    rule: str = Field(description="what to do (or avoid), in general terms: tables, columns, joins, order")
    expected_effect: str = Field(description="what following the rule gains")
    worth_keeping: bool = Field(description="false if nothing general can be learned from this investigation")


@dataclass(frozen=True)
class ActionKind:
    name: str
    description: str
    args: type[BaseModel]
    text_fields: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # short names models use in text mode ("sql", "submit")

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=strict_schema(self.args))


RUN_SQL = ActionKind("run_sql", "Run one read-only SQL query on the log tables.", SqlArgs, aliases=("sql", "query"))
SUBMIT = ActionKind("submit_answer", "Give the final answer.", AnswerArgs, ("answer",), ("submit", "answer"))
VERDICT = ActionKind("give_verdict", "Give the verdict on the analyst's answer, with its evidence.", VerdictArgs, aliases=("verdict",))
REVIEW = ActionKind("give_review", "Say whether the analyst should follow the proposed approach.", ReviewArgs, aliases=("review",))
LESSON = ActionKind("write_lesson", "Write one general, reusable lesson from this investigation.", LessonArgs, aliases=("lesson",))


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A JSON schema every structured-output implementation accepts: all fields required, no extras."""
    properties: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        kind = {str: "string", bool: "boolean", int: "integer", float: "number"}.get(info.annotation)  # type: ignore[arg-type]
        if kind is None and get_origin(info.annotation) is list and get_args(info.annotation) == (str,):
            properties[name] = {"type": "array", "items": {"type": "string"}}
        else:
            properties[name] = {"type": kind or "string"}
        if info.description:
            properties[name]["description"] = info.description
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def envelope_schema(kinds: Sequence[ActionKind]) -> dict[str, Any]:
    """The text/json-schema form of a choice between actions: {"action": name, "arguments": {...}}."""
    if len(kinds) == 1:
        return strict_schema(kinds[0].args)
    return {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": [k.name for k in kinds]},
            "arguments": {"anyOf": [strict_schema(k.args) for k in kinds]},
        },
        "required": ["action", "arguments"],
        "additionalProperties": False,
    }


def example(kinds: Sequence[ActionKind]) -> str:
    """A short example reply for text-mode instructions and repairs."""
    if len(kinds) == 1:
        return json.dumps({name: "..." for name in kinds[0].args.model_fields})
    first = kinds[0]
    return json.dumps({"action": first.name, "arguments": {name: "..." for name in first.args.model_fields}})


@dataclass
class Action:
    kind: ActionKind
    args: BaseModel
    message: ChatMessage  # the assistant turn as it stays in the conversation
    call_id: str | None = None  # tools mode: the call an observation answers
    short: ChatMessage | None = None  # the same turn without the model's notes, for when it is old

    def reply(self, text: str, nonce: str) -> ChatMessage:
        """The message that carries this action's result back (tool role, or delimited data)."""
        if self.call_id is not None:
            return ChatMessage(role="tool", tool_call_id=self.call_id, content=text)
        return ChatMessage(role="user", content=delimit(text, nonce))


def episode_nonce(*parts: str) -> str:
    """A per-episode marker for data blocks: stable for a task, not guessable from the log rows."""
    return hashlib.sha256("\x1f".join(("atlas-data", *parts)).encode()).hexdigest()[:12]


def delimit(text: str, nonce: str) -> str:
    clean = text.replace(f"<<END {nonce}>>", "<<end>>")
    return f"<<DATA {nonce}>>\n{clean}\n<<END {nonce}>>"


@dataclass
class Turns:
    """Asks one model for actions; the repair allowance is shared by every turn of one attempt."""

    llm: LLMClient
    max_tokens: int
    repairs: int
    estimator: TokenEstimator = field(default_factory=TokenEstimator)
    repairs_used: int = 0
    truncations: int = 0
    actions: int = 0  # valid actions received
    invalid: int = 0  # replies that were not a valid action

    def counts(self) -> dict[str, int]:
        return {"actions": self.actions, "invalid": self.invalid, "truncated": self.truncations}

    @property
    def mode(self) -> str:
        return self.llm.capabilities.mode

    def ask(self, conversation: Conversation, kinds: Sequence[ActionKind], forced: bool = False) -> Action:
        """The model's next action among `kinds` (`forced`: the model must take `kinds[0]`)."""
        tail: list[ChatMessage] = []
        overflowed = False
        known = getattr(self.llm, "context_limit", None)  # learned from an earlier overflow of this model
        if known:
            conversation.budget = min(conversation.budget, max(256, known - self.max_tokens - CONTEXT_MARGIN))
        accepted = getattr(self.llm.backend, "max_prompt_tokens", None)  # an in-process model's input limit
        if accepted:
            conversation.budget = min(conversation.budget, max(256, accepted - CONTEXT_MARGIN))
        while True:
            messages = conversation.messages(tail)
            estimate = self.estimator.messages(messages, [k.spec for k in kinds] if self.mode == "tools" else ())
            try:
                completion = self.llm.chat(messages, **self._params(kinds, forced))
            except LLMContextOverflow as overflow:
                if overflowed:  # compacted once and still too long: now it is the episode's model failure
                    ledger = current_ledger()
                    if ledger is not None:
                        ledger.record_failure(f"{self.llm.model}: {overflow}")
                    raise
                overflowed = True
                if overflow.limit:  # the server said how large its window is: remember it for every later call
                    self.llm.context_limit = overflow.limit  # type: ignore[attr-defined]
                    conversation.budget = min(int(conversation.budget * 0.75), max(256, overflow.limit - self.max_tokens - CONTEXT_MARGIN))
                else:
                    conversation.tighten()
                continue
            if not completion.cached:
                self.estimator.observe(estimate, completion.usage.prompt_tokens)
            try:
                action = self._action(completion.text, completion.tool_calls, kinds)
                self.actions += 1
                return action
            except ReplyError as error:
                self.invalid += 1
                problem = error
                if completion.truncated:
                    self.truncations += 1
                    problem = ReplyError(f"the reply was cut off at the {self.max_tokens}-token limit; reply with one short action")
                if self.repairs_used >= self.repairs:
                    raise GaveUp(f"no valid action after {self.repairs} repair turns ({problem})") from None
                self.repairs_used += 1
                tail = self._repair(completion.text, completion.tool_calls, kinds, str(problem))

    def _params(self, kinds: Sequence[ActionKind], forced: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": 0.0}
        if self.mode == "tools":
            params["tools"] = tuple(k.spec for k in kinds)
            params["tool_choice"] = kinds[0].name if forced or len(kinds) == 1 else "auto"
        elif self.mode == "json-schema":
            params["response_format"] = JsonSchemaFormat(name="action", schema=envelope_schema(kinds))
        return params

    def _action(self, text: str, calls: Sequence[ToolCall], kinds: Sequence[ActionKind]) -> Action:
        by_name = {k.name: k for k in kinds}
        aliases = {alias: k for k in kinds for alias in (k.name, *k.aliases)}
        if calls:
            call = calls[0]  # one action per turn; any further calls are dropped from the history
            kind = by_name.get(call.name)
            if kind is None:
                raise ReplyError(f"there is no tool {call.name!r} here; use one of {', '.join(by_name)}")
            try:
                data = json.loads(call.arguments or "{}")
            except json.JSONDecodeError as error:
                raise ReplyError(f"the arguments of {call.name} are not valid JSON ({error.msg})") from None
            if not isinstance(data, dict):
                raise ReplyError(f"the arguments of {call.name} must be a JSON object")
            args = validate({k: as_text(v) if k in kind.text_fields else v for k, v in data.items()}, kind.args)
            message = ChatMessage(role="assistant", content=text if len(text) < 2000 else "", tool_calls=(call,))
            bare = call.model_copy(update={"arguments": json.dumps(args.model_dump(exclude={"thought"}))})
            return Action(kind, args, message, call.id, ChatMessage(role="assistant", tool_calls=(bare,)))
        if len(kinds) == 1:
            kind = kinds[0]
            try:
                parsed = parse_reply(text, kind.args, kind.text_fields)
            except ReplyError:  # the {"action": ..., "arguments": {...}} form for a single action is fine too
                envelope = parse_reply(text, _Envelope)
                if aliases.get(envelope.action) is not kind or not envelope.arguments:
                    raise
                parsed = validate({k: as_text(v) if k in kind.text_fields else v for k, v in envelope.arguments.items()}, kind.args)
        else:
            envelope = parse_reply(text, _Envelope)
            kind = aliases.get(envelope.action)
            if kind is None:
                raise ReplyError(f'"action" must be one of {", ".join(by_name)}, not {envelope.action!r}')
            data = envelope.arguments if envelope.arguments else envelope.model_extra or {}
            parsed = validate({k: as_text(v) if k in kind.text_fields else v for k, v in data.items()}, kind.args)
        def canonical(args: dict[str, Any]) -> str:
            return json.dumps({"action": kind.name, "arguments": args} if len(kinds) > 1 else args)

        return Action(
            kind, parsed, ChatMessage(role="assistant", content=canonical(parsed.model_dump())),
            short=ChatMessage(role="assistant", content=canonical(parsed.model_dump(exclude={"thought"}))),
        )

    def _repair(self, text: str, calls: Sequence[ToolCall], kinds: Sequence[ActionKind], problem: str) -> list[ChatMessage]:
        ask = f"That reply was not usable ({problem[:200]})."
        if self.mode == "tools":
            ask += f" Call exactly one of the tools: {', '.join(k.name for k in kinds)}."
            if calls:
                return [
                    ChatMessage(role="assistant", content="", tool_calls=(calls[0],)),
                    ChatMessage(role="tool", tool_call_id=calls[0].id, content=f"error: {ask}"),
                ]
        else:
            ask += f" Reply with one JSON object only, for example {example(kinds)}"
        return [ChatMessage(role="assistant", content=text[:500] or "(empty reply)"), ChatMessage(role="user", content=ask)]


class _Envelope(BaseModel):
    """{"action": ..., "arguments": {...}}; the flat form {"action": ..., "sql": ...} is accepted too."""

    model_config = ConfigDict(extra="allow")
    action: str
    arguments: dict[str, Any] | None = None
