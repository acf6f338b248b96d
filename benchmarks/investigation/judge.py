"""An optional LLM judge of final answers, the way ExCyTIn-Bench grades them: a model decides whether the
submitted answer means the golden one (a fuzzy match), instead of the normalised string match.

Off by default; the normalised match stays the offline grader. The judge is any model client
(`atlas.llm`, e.g. `openai:gpt-4o-mini` or any OpenAI-compatible endpoint), so every call is
metered like any other. Each `Judgement` keeps the exact messages sent and the reply, so a
results file can show why a question was marked as it was. The judge sees the golden answer: its
judgements belong in results files, never in anything a learning agent is shown.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from atlas.errors import LLMError
from benchmarks.investigation.models import Question

if TYPE_CHECKING:
    from atlas.llm.client import LLMClient

JUDGE_INSTRUCTIONS = """You grade answers to security-investigation questions against a golden answer.
Decide whether the submitted answer states the golden answer.
- Formatting does not matter: case, quotes, spacing, a URL's scheme or trailing slash, DOMAIN\\user
  against user@domain, a timestamp's format or time zone, a file name with or without its folder.
- Extra context around the golden answer is fine. A list that contains the golden answer is correct
  only when it is short (at most 5 items) and relevant; a long enumeration is incorrect.
- A different value of the same kind (another IP, another account) is incorrect.
- Treat the golden answer as the truth even if the question seems to disagree with it.
Reply in exactly two lines:
Analysis: <one short sentence>
Verdict: correct | incorrect"""

_VERDICT = re.compile(r"verdict\s*[:=]\s*[*_`\"']*\s*(correct|incorrect|true|false|yes|no)\b", re.IGNORECASE)
_ANALYSIS = re.compile(r"analysis\s*[:=]\s*(.+)", re.IGNORECASE)
_POSITIVE = ("correct", "true", "yes")


def judge_messages(question: Question, submitted: str) -> list[dict[str, str]]:
    """The chat messages the judge is sent for one answer."""
    task = f"Question: {question.context}\n{question.question}".strip() if question.context else f"Question: {question.question}"
    body = f"{task}\n\nGolden answer: {question.answer}\n\nSubmitted answer: {submitted}"
    return [{"role": "system", "content": JUDGE_INSTRUCTIONS}, {"role": "user", "content": body}]


def read_verdict(reply: str) -> bool | None:
    """The reply's last verdict line as True/False, or None when it has none."""
    found = _VERDICT.findall(reply)
    return found[-1].lower() in _POSITIVE if found else None


@dataclass(frozen=True)
class Judgement:
    """One judged answer: the verdict (None when the reply had none or the call failed), what was sent and said."""

    verdict: bool | None
    analysis: str
    messages: tuple[dict[str, str], ...]
    reply: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"messages": [dict(m) for m in self.messages]}


class AnswerJudge:
    """Asks a model whether a submitted final answer matches the golden answer."""

    def __init__(self, llm: LLMClient, max_tokens: int = 200) -> None:
        self.llm = llm
        self.max_tokens = max_tokens

    def judge(self, question: Question, submitted: str) -> Judgement:
        messages = judge_messages(question, submitted)
        start = time.perf_counter()
        try:
            completion = self.llm.chat(messages, max_tokens=self.max_tokens, temperature=0.0)
        except LLMError as error:  # the grade falls back to the normalised match; the record says why
            return Judgement(None, "", tuple(messages), "", self.llm.model, seconds=time.perf_counter() - start,
                             error=str(error))  # fmt: skip
        analysis = _ANALYSIS.search(completion.text)
        verdict = read_verdict(completion.text)
        return Judgement(
            verdict=verdict,
            analysis=analysis.group(1).strip() if analysis else "",
            messages=tuple(messages),
            reply=completion.text,
            model=completion.model,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            cost_usd=completion.cost_usd,
            seconds=completion.latency_s,
            error=None if verdict is not None else "the reply has no 'Verdict: correct|incorrect' line",
        )
