"""Surface variants of an answer that must grade as the answer itself, and the grader's self-consistency over them.

A right answer written another way (upper case, padded, quoted, with a sentence-final '.',
a URL's scheme, DOMAIN\\user for user@domain, a GUID in braces, ...) must still be right; the
share of questions whose answer survives each variant measures the normalisation on real files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from benchmarks.investigation.grader import Grader
from benchmarks.investigation.models import Question

_QUOTE_PAIRS = (('"', '"'), ("'", "'"), ("`", "`"), ("\u201c", "\u201d"))


def _quoted(answer: str) -> str:
    opening, closing = next(((a, b) for a, b in _QUOTE_PAIRS if a not in answer and b not in answer), _QUOTE_PAIRS[-1])
    return f"{opening}{answer}{closing}"


def _typed(answer: str, answer_type: str) -> dict[str, str]:
    """Variants that only apply to some types."""
    variants: dict[str, str] = {}
    if answer_type == "url":
        scheme = re.match(r"(?i)(https?)://", answer)
        if scheme:
            other = "http" if scheme.group(1).lower() == "https" else "https"
            variants["url scheme"] = other + answer[len(scheme.group(1)) :]
            variants["no url scheme"] = answer[scheme.end() :]
        variants["trailing slash"] = answer[:-1] if answer.endswith("/") else answer + "/"
    elif answer_type == "domain":
        variants["url form"] = f"http://{answer}/"
    elif answer_type == "account_upn" and "@" in answer:
        user, _, domain = answer.rpartition("@")
        variants["DOMAIN\\user"] = f"{domain.split('.')[0].upper()}\\{user}"
    elif answer_type == "account_name":
        variants["DOMAIN\\user"] = f"CORP\\{answer}"
        variants["user@domain"] = f"{answer}@corp.example.com"
    elif answer_type == "mailbox":
        variants["mailto: prefix"] = f"mailto:{answer}"
    elif answer_type in ("guid", "account_object_id", "device_id", "oauth_app_id"):
        variants["braces"] = "{" + answer.upper() + "}"
    elif answer_type == "host_name":
        variants["fully qualified"] = f"{answer}.corp.example.com"
    elif answer_type == "timestamp":
        variants["ISO T and Z"] = re.sub(r"(\d{2}) (\d{2}:)", r"\1T\2", answer).replace("+00:00", "Z")
    elif answer_type == "number" and answer.strip().isdigit() and int(answer) >= 1000:
        variants["thousands separator"] = f"{int(answer):,}"
    return variants


def surface_variants(answer: str, answer_type: str) -> dict[str, str]:
    """Variant name -> the answer written that way (the general ones, then those of its type)."""
    variants = {
        "upper case": answer.upper(),
        "lower case": answer.lower(),
        "whitespace": f"  {answer}\t",
        "quoted": _quoted(answer),
    }
    if not answer.rstrip().endswith("."):
        variants["trailing dot"] = answer + "."
    return variants | _typed(answer, answer_type)


def self_consistency(questions: Iterable[Question], grader: Grader | None = None) -> dict[str, dict[str, float | int]]:
    """Per variant (and "itself"): how many questions it applies to, and the share that grade 1.0."""
    grader = grader or Grader()
    counts: dict[str, list[int]] = {}
    for question in questions:
        tried = {"itself": question.answer} | surface_variants(question.answer, question.answer_type)
        for name, text in tried.items():
            tally = counts.setdefault(name, [0, 0])
            tally[0] += 1
            tally[1] += int(grader.grade(question, text).reward == 1.0)
    return {name: {"questions": n, "graded_1": ok, "share": ok / n} for name, (n, ok) in counts.items()}
