"""The records the benchmark passes around: questions (with ground truth) and tasks (without)."""

from __future__ import annotations

from typing import Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field

AnswerType = Literal[
    "account_name",
    "account_sid",
    "account_upn",
    "account_object_id",
    "host_name",
    "device_id",
    "ip",
    "url",
    "file_name",
    "sha256",
    "command_line",
    "mailbox",
    "cloud_app",
    "oauth_app_id",
    "domain",
    "path",
    "timestamp",
    "number",
    "hash",
    "guid",
    "text",
]
ANSWER_TYPES: tuple[str, ...] = AnswerType.__args__  # type: ignore[attr-defined]


def is_answer_type(name: str) -> TypeGuard[AnswerType]:
    """True when `name` is one of the answer types a question may have."""
    return name in ANSWER_TYPES

Split = Literal["train", "test"]


class SolutionStep(BaseModel):
    """One step of the reference investigation: what to look up and the value it reveals."""

    model_config = ConfigDict(extra="forbid")

    lookup: str
    value: str | None = None


class Task(BaseModel):
    """What an agent is shown: the alert context and the question, never the answer."""

    model_config = ConfigDict(extra="forbid")

    id: str
    incident: int | str
    context: str
    question: str
    answer_type: AnswerType = "text"


class Question(BaseModel):
    """A benchmark question with its ground truth; only `task()` may reach an agent."""

    model_config = ConfigDict(extra="forbid")

    id: str
    incident: int | str
    split: Split | None = None
    difficulty: int = Field(ge=0)
    context: str  # may be empty: some ExCyTIn questions carry everything in `question`
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    answer_type: AnswerType = "text"
    solution: list[SolutionStep] = Field(default_factory=list)
    # alert id, entity key, alert id, ... from the start alert to the end alert
    path: list[str] = Field(default_factory=list)
    start_alert: str | None = None
    end_alert: str | None = None
    template: str | None = None
    source: Literal["atlas-soc", "excytin"] = "atlas-soc"

    def task(self) -> Task:
        return Task(
            id=self.id,
            incident=self.incident,
            context=self.context,
            question=self.question,
            answer_type=self.answer_type,
        )
