"""Keeping an agent's conversation inside a prompt budget.

A tool loop grows by one query and one observation per turn. Every call sends the system prompt
and the task; the last few turns in full; the few before them compacted (status line, header, two
rows, and the sandbox's row-count and cut notes, which are never dropped) and older ones as one line
each (the query, its status and row count), with the model's own old notes (`thought`) left out.
When even that exceeds the budget, fewer turns stay whole, then the oldest are dropped, then the
latest observation is cut in the middle. Tokens are estimated conservatively and the estimate is
corrected by the token counts the server reports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from atlas.llm.types import ChatMessage, ToolSpec

CHARS_PER_TOKEN = 3.0  # SQL, JSON and log rows tokenize densely; English prose is nearer 4
MESSAGE_OVERHEAD = 6  # role and separators per message
ROWS_KEPT = 2


class TokenEstimator:
    """Counts with a real tokenizer when one is given, else chars / 3; learns a correction from usage."""

    def __init__(self, count: Callable[[str], int] | None = None) -> None:
        self._count = count
        self.factor = 1.0

    def text(self, text: str) -> int:
        raw = self._count(text) if self._count else math.ceil(len(text) / CHARS_PER_TOKEN)
        return math.ceil(raw * self.factor)

    def messages(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> int:
        total = sum(self.text(m.content) + MESSAGE_OVERHEAD for m in messages)
        total += sum(self.text(c.name + c.arguments) + MESSAGE_OVERHEAD for m in messages for c in m.tool_calls)
        total += sum(self.text(json.dumps(t.to_openai())) for t in tools)
        return total

    def observe(self, estimated: int, reported: int) -> None:
        """The server counted `reported` tokens where we estimated `estimated`: never underestimate again."""
        if estimated > 0 and reported > 0:
            self.factor = min(4.0, max(self.factor, self.factor * reported / estimated))


def compact_observation(text: str, rows_kept: int = ROWS_KEPT) -> str:
    """An old observation in short: its first line, header and first rows, and every trailing note."""
    lines = text.splitlines()
    if len(lines) <= 2 + rows_kept:
        return text
    notes: list[str] = []
    while lines and len(lines) > 2 and lines[-1].startswith(("(", "[")):
        notes.insert(0, lines.pop())
    body = lines[2:]
    kept = lines[:2] + body[:rows_kept]
    if len(body) > rows_kept:
        kept.append(f"[... {len(body) - rows_kept} more printed rows omitted from this older observation]")
    return "\n".join(kept + notes)


def one_line(text: str) -> str:
    """An observation reduced to its status line and its row-count note."""
    lines = text.splitlines()
    notes = [line for line in lines[1:] if line.startswith(("(", "["))]
    return " ".join([lines[0] if lines else "", *notes[-1:]]).strip()


BRIEF_CHARS = 72


def brief(text: str, max_chars: int = BRIEF_CHARS) -> str:
    """A one-line label cut to max_chars."""
    flat = " ".join(text.split())
    return flat if len(flat) <= max_chars else flat[:max_chars] + " [...]"


def cut_middle(text: str, max_chars: int) -> str:
    """Text cut in the middle to max_chars, keeping the first and the last lines whole where possible."""
    if len(text) <= max_chars:
        return text
    lines = text.splitlines()
    head, tail = lines[0], lines[-1] if len(lines) > 1 else ""
    room = max(0, max_chars - len(head) - len(tail) - 40)
    middle = "\n".join(lines[1:-1])[:room]
    return f"{head}\n{middle}\n[... cut to fit the prompt budget ...]\n{tail}"[: max(max_chars, len(head) + len(tail) + 40)]


@dataclass
class Turn:
    """One action and what it showed. `render` turns (possibly compacted) observation text into its message."""

    action: ChatMessage
    observation: str
    render: Callable[[str], ChatMessage]
    label: str  # what the action was, in one line (for folded turns)
    short_action: ChatMessage | None = None  # the action without the model's notes, for old turns


@dataclass
class Conversation:
    """The head (system prompt, task) and the turns since; `messages()` renders them within the budget."""

    head: list[ChatMessage]
    budget: int
    estimator: TokenEstimator
    tools: Sequence[ToolSpec] = ()
    keep_full: int = 2
    keep_compact: int = 2
    keep_lines: int = 4  # older turns as one line each in one message; older still are left out
    turns: list[Turn] = field(default_factory=list)
    compactions: int = 0  # calls whose prompt had to be compacted

    def add(self, turn: Turn) -> None:
        self.turns.append(turn)

    def tighten(self) -> None:
        """After a context overflow: fit into three quarters of the budget from now on."""
        self.budget = max(256, int(self.budget * 0.75))

    def messages(self, tail: Sequence[ChatMessage] = ()) -> list[ChatMessage]:
        """The conversation (plus `tail`, e.g. a repair request) as it fits the budget."""
        turns = self.turns
        full = len(turns)
        for level in range(4):
            rendered = self._render(turns, level, tail)
            if self.estimator.messages(rendered, self.tools) <= self.budget:
                if level:
                    self.compactions += 1
                return rendered
        # even the folded form is too long: drop the oldest folded turns, then cut the last observation
        folded = list(turns)
        while len(folded) > 1:
            folded = folded[1:]
            rendered = self._render(folded, 3, tail, dropped=full - len(folded))
            if self.estimator.messages(rendered, self.tools) <= self.budget:
                self.compactions += 1
                return rendered
        self.compactions += 1
        rendered = self._render(folded, 3, tail, dropped=full - len(folded))
        spare = self.budget - self.estimator.messages(rendered[:-1], self.tools) if folded else 0
        if folded and spare > 0:
            last = folded[-1]
            room = int(spare / self.estimator.factor * 3.0) - 40
            rendered[-1 - len(tail)] = last.render(cut_middle(last.observation, max(120, room)))
        return rendered

    def _render(self, turns: Sequence[Turn], level: int, tail: Sequence[ChatMessage], dropped: int = 0) -> list[ChatMessage]:
        """Which turns stay whole, compacted or one line, by age (0 = the latest):
        level 0: ages < keep_full whole, the next keep_compact compacted, older ones one line each;
        level 1: the latest whole, three compacted; level 2: the latest compacted; level 3: all one line.
        One-line turns are folded into a single message after the task ("earlier queries: ...")."""
        whole, compact = [(self.keep_full, self.keep_compact), (1, 3), (0, 1), (0, 0)][level]
        kept = whole + compact
        limit = kept + self.keep_lines
        if len(turns) > limit:
            dropped += len(turns) - limit
            turns = turns[-limit:]
        folded, recent = turns[: max(0, len(turns) - kept)], turns[max(0, len(turns) - kept):]
        out = list(self.head)
        if dropped or folded:
            lines = [f"[{dropped} earlier queries are left out of this prompt to keep it short]"] if dropped else []
            lines += [f"- {brief(turn.label)} -> {one_line(turn.observation)}" for turn in folded]
            out.append(ChatMessage(role="user", content="Earlier queries of this investigation, in short:\n" + "\n".join(lines)))
        n = len(recent)
        for index, turn in enumerate(recent):
            age = n - 1 - index
            action = turn.action if age == 0 else turn.short_action or turn.action  # the model's notes: its latest only
            text = turn.observation if age < whole else compact_observation(turn.observation)
            out.append(action)
            out.append(turn.render(text))
        out.extend(tail)
        return out
