"""Grading of investigation answers: a normalised match, else ExCyTIn-style partial credit.

Success is equality of the normalised submitted and expected answers. Normalisation
removes differences that do not change the meaning (case, whitespace, quotes, list
order, a sentence-final '.', forms of IPs, hashes, GUIDs, numbers, timestamps, account,
host and file names, paths, domains and URLs), so that a right answer is not marked wrong
for its spelling; see `normalize_answer`. `answer_types.infer_answer_type` picks the type
for files that do not say it.

Partial credit (ExCyTIn convention): a wrong answer still earns credit for the
intermediate solution steps whose value appears in what the agent was shown (its query
results). The last step states the answer itself and earns nothing on its own: seeing
the answer among many rows and not submitting it is not progress. With n steps, step i
(1-based, i < n) weighs decay**(n-i): with the default decay 0.4 the step before the
answer weighs 0.4, the one before 0.16, then 0.064, ...; steps whose value is None earn
nothing. Reward is 1.0 on success, else min(sum of credits, cap) with cap < 1, so a
wrong answer never earns full reward.

Optionally (ExCyTIn's way) an LLM judge decides the final answer instead of the normalised
match (`judge.AnswerJudge`); `Grader.assess` returns both, and the judge's messages and reply.

A Grade carries only step descriptions, flags and numbers, never the expected answer
or a step value: the breakdown may be shown to a learning agent. An Assessment's judgement
holds the golden answer and belongs in results files only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from benchmarks.investigation.answer_types import NUMBER, TIMESTAMP
from benchmarks.investigation.models import ANSWER_TYPES, Question

if TYPE_CHECKING:
    from benchmarks.investigation.judge import AnswerJudge, Judgement

_QUOTES = ('""', "''", "``", "\u201c\u201d", "\u2018\u2019")
_LIST_SEP = re.compile(r"[,;\n]|\s+and\s+", re.IGNORECASE)
_TEXT_SEP = re.compile(r"[;\n]")
_BULLET = re.compile(r"^(?:[-*\u2022]|\d+[.)])\s+")
_HASH = re.compile(r"(?:sha-?256|sha-?1|md5)\s*[:=]\s*([0-9a-f]{32,128})")
_SCHEME = re.compile(r"^(?:https?|hxxps?|ftp)://")
_MAIL_PREFIX = re.compile(r"^(?:mailto|smtp):")
_IPV4_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}")
_BRACKETED_IP = re.compile(r"\[([0-9a-f:.%]+)\](?::\d{1,5})?")
_NUMBERISH = re.compile(r"\d+(?:\.\d+)*")
_REDACTED = "[redacted]"


def _unquote(text: str) -> str:
    """Strip whitespace and matching outer quotes; a quote recurring inside means it is not one value."""
    text = text.strip()
    while len(text) >= 2:
        pair = next((q for q in _QUOTES if text[0] == q[0] and text[-1] == q[1]), None)
        if pair is None or pair[0] in text[1:-1] or pair[1] in text[1:-1]:
            break
        text = text[1:-1].strip()
    return text


def _basic(text: str) -> str:
    """Rules for every type: NFKC, quotes, whitespace, case, one sentence-final '.' (not '..', not ' .')."""
    text = " ".join(_unquote(unicodedata.normalize("NFKC", text)).split()).casefold()
    if text.endswith(".") and not text.endswith("..") and not text.endswith(" ."):
        text = _unquote(text[:-1])
    return text


def _timestamp(text: str) -> str:
    """ISO form in UTC (seconds, then the fraction without trailing zeros); unparseable text stays."""
    match = TIMESTAMP.fullmatch(text)
    if match is None:
        return text
    day, hour, minute, second, fraction, zone = match.groups()
    if hour is None:
        return day
    moment = dt.datetime.fromisoformat(f"{day}T{hour}:{minute}:{second or '00'}")
    if zone and zone != "z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        moment -= sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    digits = (fraction or "").rstrip("0")
    return moment.strftime("%Y-%m-%dt%H:%M:%S") + (f".{digits}" if digits else "")


def _number(text: str) -> str:
    """Digits without thousands separators or a label ("ProcessId 3624" is 3624); other text stays."""
    match = NUMBER.fullmatch(text)
    if match is None:
        return text
    whole, fraction = match.group(1).replace(",", ""), (match.group(2) or "").rstrip("0")
    return f"{int(whole)}.{fraction}" if fraction else str(int(whole))


def _account(text: str) -> str:
    """user@domain with the domain's first label, so DOMAIN\\user and user@domain.example.com agree."""
    if "\\" in text:
        domain, user = text.rsplit("\\", 1)
        return f"{user}@{domain.split('.')[0]}" if domain else user
    user, at, domain = text.rpartition("@")
    return f"{user}@{domain.split('.')[0]}" if at and user else text


def _ip(text: str) -> str | None:
    """Canonical IP text (leading zeros, ports, brackets, IPv4-mapped IPv6 accepted), or None."""
    match = _BRACKETED_IP.fullmatch(text) or _IPV4_PORT.fullmatch(text)
    if match:
        text = match.group(1)
    parts = text.split(".")
    if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        octets = [int(p) for p in parts]  # by hand: `ipaddress` rejects leading zeros
        return ".".join(map(str, octets)) if max(octets) <= 255 else None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def _item(text: str, answer_type: str) -> str:
    """Normalise one (non-list) value by the rules of its type."""
    text = _basic(_BULLET.sub("", text.strip()))
    hashed = _HASH.fullmatch(text)
    if hashed:
        return hashed.group(1)
    if answer_type in ("ip", "host_name"):
        ip = _ip(text)
        if ip is not None or answer_type == "ip":
            return ip if ip is not None else text
    if answer_type in ("account_name", "host_name"):
        text = text.rsplit("\\", 1)[-1]  # DOMAIN\name
        text = text.split("@" if answer_type == "account_name" else ".", 1)[0]  # UPN / DNS suffix
    elif answer_type == "account_upn":
        text = _account(_MAIL_PREFIX.sub("", text))
    elif answer_type == "mailbox":
        text = _MAIL_PREFIX.sub("", text)
    elif answer_type in ("url", "domain"):
        text = text.replace("[.]", ".").replace("(.)", ".").replace("[:]", ":")
        text = _SCHEME.sub("", text).rstrip("/")
        if answer_type == "domain":
            text = text.split("/", 1)[0].rstrip(".")  # a URL's host part, a fully qualified name's final dot
    elif answer_type in ("device_id", "account_object_id", "oauth_app_id", "guid"):
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1].strip()
    elif answer_type == "file_name":
        text = re.split(r"[\\/]", text)[-1]
    elif answer_type == "path":
        text = re.sub(r"[\\/]+", "/", text).rstrip("/")
    elif answer_type == "timestamp":
        text = _timestamp(text)
    elif answer_type == "number":
        text = _number(text)
    return text


def _items(value: str, answer_type: str) -> list[str]:
    """The normalised items of a value: split into a list (never a command line), deduplicated, sorted."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}")
    text = _unquote(unicodedata.normalize("NFKC", value))
    if answer_type == "command_line":
        text = _basic(text)
        return [text] if text else []
    inner = text[1:-1]
    json_list = text[:1] == "[" and text[-1:] == "]" and "," in inner and not set("[]") & set(inner)
    if json_list and answer_type != "text":
        text = inner  # a JSON-style list
    separators = _TEXT_SEP if answer_type in ("text", "number", "timestamp", "cloud_app") else _LIST_SEP
    return sorted({item for item in (_item(part, answer_type) for part in separators.split(text)) if item})


def normalize_answer(value: str, answer_type: str = "text") -> str:
    """Canonical form of an answer: lists become their sorted items joined by '; '."""
    return "; ".join(_items(value, answer_type))


def answers_match(submitted: str, expected: str, answer_type: str = "text") -> bool:
    """Whether the answers are equal once normalised (an expected answer normalising to '' never matches)."""
    expected_form = normalize_answer(expected, answer_type)
    return bool(expected_form) and normalize_answer(submitted, answer_type) == expected_form


def _haystack(observation: str) -> str:
    """Observation text as values are searched in it: JSON escapes undone, spaces collapsed, casefolded."""
    text = unicodedata.normalize("NFKC", observation).replace("\\\\", "\\").replace('\\"', '"')
    return " ".join(text.split()).casefold()


def _free(hay: str, index: int, step: int, colon: bool) -> bool:
    """Whether the character at `index`, just outside a match, does not continue the matched token."""
    if not 0 <= index < len(hay):
        return True
    char = hay[index]
    if char.isalnum() or char == "_":
        return False
    if char == "." or (colon and char == ":"):  # 10.0.0.1 in 10.0.0.1.5, fe80::1 in fe80::1:5
        beyond = index + step
        return not (0 <= beyond < len(hay) and hay[beyond].isalnum())
    return True


def _contains(hay: str, needle: str, answer_type: str) -> bool:
    """Substring search; IPs, numbers and short values must stand alone (10.0.0.1 is not in 10.0.0.12)."""
    strict = answer_type == "ip" or len(needle) < 4 or bool(_NUMBERISH.fullmatch(needle))
    strict = strict or _ip(needle) is not None
    colon = ":" in needle
    start = hay.find(needle)
    while start >= 0:
        if not strict or (_free(hay, start - 1, -1, colon) and _free(hay, start + len(needle), 1, colon)):
            return True
        start = hay.find(needle, start + 1)
    return False


def _seen(value: str, haystacks: Sequence[str], answer_type: str) -> bool:
    """Every item of the value occurs in some haystack."""
    items = _items(value, answer_type)
    return bool(items) and all(any(_contains(hay, item, answer_type) for hay in haystacks) for item in items)


def value_observed(value: str, observations: Sequence[str], answer_type: str = "text") -> bool:
    """Whether the normalised value (each item, for a list) appears in the text the agent was shown."""
    if isinstance(observations, str):  # one text, not a sequence of characters
        observations = (observations,)
    return _seen(value, [_haystack(o) for o in observations], answer_type)


def _redact(text: str, secrets: Sequence[str]) -> str:
    """Blank out ground-truth values quoted in a step description, so the breakdown cannot leak them."""
    for secret in sorted({s.strip() for s in secrets if len(s.strip()) >= 3}, key=len, reverse=True):
        text = re.sub(re.escape(secret), _REDACTED, text, flags=re.IGNORECASE)
    return text


@dataclass(frozen=True)
class StepCredit:
    """Credit for one solution step; holds its description, never its value."""

    index: int
    lookup: str
    found: bool
    weight: float
    credit: float


@dataclass(frozen=True)
class Grade:
    """A reward in [0, 1] with its per-step breakdown; safe to show to the agent."""

    reward: float
    success: bool
    partial: float
    steps: tuple[StepCredit, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reward": self.reward,
            "success": self.success,
            "partial": self.partial,
            "steps": [asdict(step) for step in self.steps],
        }


@dataclass(frozen=True)
class Assessment:
    """A grade with how it was reached: the normalised match, and the judge's judgement when one ran."""

    grade: Grade
    matched: bool
    judgement: Judgement | None = None


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Grader:
    """Grades submitted answers: 1.0 for a normalised match (or the judge's yes), else capped, decayed step credit."""

    def __init__(self, decay: float = 0.4, cap: float = 0.99, judge: AnswerJudge | None = None) -> None:
        if not _is_real(decay) or not 0 < decay < 1:
            raise ValueError(f"decay must be a number with 0 < decay < 1 (ExCyTIn uses 0.4); got {decay!r}")
        if not _is_real(cap) or not 0 <= cap < 1:
            raise ValueError(
                f"cap must be a number with 0 <= cap < 1, so a wrong answer never earns full reward;"
                f" got {cap!r}"
            )
        self.decay = float(decay)
        self.cap = float(cap)
        self.judge = judge

    def grade(self, question: Question, submitted: str | None, observations: Sequence[str] = ()) -> Grade:
        """Grade one answer; `observations` are the texts (query results) the agent was shown."""
        return self.assess(question, submitted, observations).grade

    def assess(self, question: Question, submitted: str | None, observations: Sequence[str] = ()) -> Assessment:
        """The grade, the normalised match, and (with a judge) its judgement, which decides success when it has a verdict."""
        matched = bool(submitted) and answers_match(submitted or "", question.answer, question.answer_type)
        judgement = self.judge.judge(question, submitted) if self.judge is not None and submitted else None
        success = matched if judgement is None or judgement.verdict is None else judgement.verdict
        return Assessment(self._grade(question, success, observations), matched, judgement)

    def _grade(self, question: Question, success: bool, observations: Sequence[str]) -> Grade:
        if isinstance(observations, str):
            observations = (observations,)
        haystacks = [_haystack(o) for o in observations]
        secrets = [question.answer, *(step.value for step in question.solution if step.value)]
        n = len(question.solution)
        steps: list[StepCredit] = []
        for index, step in enumerate(question.solution, start=1):
            weight = self.decay ** (n - index) if index < n else 0.0
            found = step.value is not None and (
                _seen(step.value, haystacks, "text")
                or (index == n and _seen(step.value, haystacks, question.answer_type))
            )
            lookup = _redact(step.lookup, secrets)
            steps.append(StepCredit(index, lookup, found, weight, weight if found else 0.0))
        partial = sum(step.credit for step in steps)
        if success:
            return Grade(reward=1.0, success=True, partial=0.0, steps=tuple(steps))
        return Grade(reward=min(partial, self.cap), success=False, partial=partial, steps=tuple(steps))
