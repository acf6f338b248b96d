"""What an endpoint is started with, validated in one place before anything listens or is loaded."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from atlas.ui.guard import is_loopback  # the web page's rule: only a loopback address may go without a token

LevelsSpec = Literal["hashed", "hashed,minilm"]
PolicyName = Literal["threshold", "ocl"]


class EndpointConfig(BaseModel):
    """Everything `atlas cascade serve` needs. ``labels`` are the answers, in class order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream: str = Field(description="base URL of the upstream OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1")
    model: str = Field(min_length=1, description="the upstream model name")
    upstream_key: SecretStr | None = Field(default=None, description="API key sent upstream (any value for local servers)")
    labels: tuple[str, ...] = Field(description="the label words, two or more")
    prompt: str | None = Field(default=None, description="upstream prompt with a {text} place (and optionally {labels})")
    served_name: str = Field(default="cascade", min_length=1, description="the model name clients ask for")
    levels: LevelsSpec = "hashed"
    policy: PolicyName = "threshold"
    threshold: float = Field(default=0.8, gt=0.0, le=1.0, description="threshold policy: top probability a level needs to answer")
    mu: float = Field(default=5.0, ge=0.0, description="ocl policy: weight of the expected cost of deferring")
    warmup: int = Field(default=50, ge=0, description="upstream labels learned before a cheap level may answer")
    budget: float = Field(default=1.0, ge=0.0, le=1.0, description="largest share of requests that may go upstream")
    budget_floor: int = Field(default=50, ge=0, description="upstream calls always allowed, before the share applies")
    state: Path | None = Field(default=None, description="state file: restored on start, saved on an interval and on shutdown")
    save_every_s: float = Field(default=60.0, gt=0.0)
    upstream_timeout_s: float = Field(default=60.0, gt=0.0)
    upstream_max_tokens: int = Field(default=16, ge=1, le=4096, description="completion tokens the upstream may spend on a label")
    host: str = "127.0.0.1"
    port: int = Field(default=8767, ge=0, le=65535)
    token: SecretStr | None = Field(default=None, description="Bearer key clients must send; required off loopback")
    seed: int = 0

    @field_validator("upstream")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// base URL (like http://127.0.0.1:8000/v1), got {value!r}")
        return value.rstrip("/")

    @field_validator("labels", mode="before")
    @classmethod
    def _split_labels(cls, value: object) -> object:
        return tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) < 2:
            raise ValueError("give two or more labels, comma-separated (like --labels negative,positive)")
        if any(not label for label in value):
            raise ValueError("a label is empty (two commas in a row, or a trailing comma?)")
        folded = [label.casefold() for label in value]
        if len(set(folded)) != len(folded):
            raise ValueError(f"labels must differ (ignoring case): {', '.join(value)}")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as error:
            raise ValueError(f"is not a valid template ({error}); write literal braces as {{{{ and }}}}") from None
        unknown = fields - {"text", "labels"}
        if unknown:
            raise ValueError(f"has unknown place(s) {', '.join('{' + f + '}' for f in sorted(unknown))}; only {{text}} and {{labels}} are filled")
        if "text" not in fields:
            raise ValueError("needs a {text} place where the text to classify goes")
        return value

    @model_validator(mode="after")
    def _exposed_needs_token(self) -> EndpointConfig:
        if not is_loopback(self.host) and (self.token is None or not self.token.get_secret_value()):
            raise ValueError(
                f"binding to {self.host} exposes the cascade (and the upstream budget) to the network: pass --token SECRET "
                "(or set ATLAS_SERVE_TOKEN / serve.token), or bind to 127.0.0.1"
            )
        return self

    def identity(self) -> dict[str, object]:
        """What a saved state was learned for: a state learned for other labels, levels or policy cannot be reused."""
        return {"labels": list(self.labels), "levels": self.levels, "policy": self.policy}

    def provenance(self) -> dict[str, object]:
        """Where the learned answers came from: a change is allowed, and reported on restore."""
        return {"model": self.model, "prompt": self.prompt, "upstream": self.upstream}
