"""A classification task as data: its labels, the prompt the LLM level reads, the word(s) it answers
with per label, and which class's recall is the headline (for a rare class that matters).

A task is validated once, where it enters (flags, a YAML/JSON file, a built-in name); everything
downstream (stream labels, levels, deferral, metrics, the LLM level, recorded answers) takes the
number of classes and their names from it, so nothing else hard-codes a label set.
"""

from __future__ import annotations

import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TEXT_FIELD = "text"
KNOWN_FIELDS = frozenset({"text", "labels"})


class Task(BaseModel):
    """`labels`: class names in class order (class 0 first), as a labelled stream spells them.
    `prompt`: a template with `{text}` where the item's text goes (and optionally `{labels}`, the
    answer words joined with "or"). `words`: per label the word(s) the LLM answers with (default:
    the label itself); several words for one label are alternatives, and a word may be several
    tokens long. `answer_prefix`: the start of the model's answer, prefilled so that the label word
    comes next. `headline`: the class whose recall is reported as the headline figure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    labels: tuple[str, ...] = Field(min_length=2)
    prompt: str = "{text}\n\nWhich of these is it: {labels}? Answer with one of them."
    words: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    answer_prefix: str | None = "Answer:"
    system: str | None = None
    max_words: int | None = Field(default=120, ge=1)
    headline: str | None = None

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(label.strip() for label in labels)
        if any(not label for label in cleaned):
            raise ValueError("a label must not be empty")
        folded = [label.lower() for label in cleaned]
        duplicates = sorted({label for label in folded if folded.count(label) > 1})
        if duplicates:
            raise ValueError(f"labels must be distinct (ignoring case): {', '.join(duplicates)} repeated")
        return cleaned

    @field_validator("words", mode="before")
    @classmethod
    def _words_as_tuples(cls, words: Any) -> Any:
        if isinstance(words, dict):
            return {str(k): (v,) if isinstance(v, str) else tuple(v) for k, v in words.items()}
        return words

    @field_validator("prompt")
    @classmethod
    def _prompt_marks_the_text(cls, prompt: str) -> str:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(prompt) if name is not None]
        except ValueError as error:
            raise ValueError(f"the prompt is not a valid template ({error}); write literal braces as {{{{ and }}}}") from None
        unknown = sorted(set(fields) - KNOWN_FIELDS)
        if unknown:
            raise ValueError(f"the prompt names unknown fields {', '.join('{' + u + '}' for u in unknown)}; only {{text}} and {{labels}} are filled in")
        if fields.count(TEXT_FIELD) != 1:
            raise ValueError("the prompt must mark the text's place with {text} exactly once")
        return prompt

    @model_validator(mode="after")
    def _words_and_headline_match_labels(self) -> Task:
        unknown = sorted(set(self.words) - set(self.labels))
        if unknown:
            raise ValueError(f"words are given for {', '.join(unknown)}, which are not labels ({', '.join(self.labels)})")
        owner: dict[str, str] = {}
        for label in self.labels:
            words = self.words.get(label, (label,))
            if not words or any(not w.strip() for w in words):
                raise ValueError(f"label {label!r} needs at least one non-empty answer word")
            for word in words:
                other = owner.setdefault(word.strip().lower(), label)
                if other != label:
                    raise ValueError(f"the answer word {word!r} is given for both {other!r} and {label!r}")
        if self.headline is not None and self.headline not in self.labels:
            raise ValueError(f"headline class {self.headline!r} is not a label ({', '.join(self.labels)})")
        return self

    @property
    def classes(self) -> int:
        return len(self.labels)

    def answer_words(self) -> tuple[tuple[str, ...], ...]:
        """Per class (in class order) the words the LLM may answer with."""
        return tuple(tuple(w.strip() for w in self.words.get(label, (label,))) for label in self.labels)

    def index(self, label: str) -> int | None:
        """The class index of a label name (case-insensitive), or None."""
        folded = label.strip().lower()
        for n, name in enumerate(self.labels):
            if name.lower() == folded:
                return n
        return None

    @property
    def headline_index(self) -> int | None:
        return None if self.headline is None else self.labels.index(self.headline)
