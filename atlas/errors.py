"""Errors a user can act on. The CLI prints their message without a traceback."""


class AtlasError(Exception):
    """Base class: the message says what was wrong, where, and what to do."""


class ConfigError(AtlasError):
    """Invalid or unreadable configuration."""


class LLMError(AtlasError):
    """A model call failed for good (after any retries)."""


class LLMConfigError(LLMError):
    """A model cannot be used as configured (missing key, unknown spec, missing package)."""


class LLMResponseError(LLMError):
    """The backend answered, but not with something usable."""


class LLMContextOverflow(LLMError):
    """The prompt did not fit the model's context window (the server said so, maybe with its size)."""

    def __init__(self, message: str, limit: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class LLMRejected(LLMError):
    """The server refused this request as malformed or unsupported (HTTP 4xx): retrying will not help."""


def user_message(exc: BaseException) -> str | None:
    """What the CLI says about a user error (bad settings, bad input, a store refusal); None for a
    bug. The MCP server and the web page say the same words."""
    from pydantic import ValidationError

    from memory.errors import MemoryStoreError

    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        return f"invalid {exc.title}: {problems}"
    if isinstance(exc, (AtlasError, MemoryStoreError)):
        return str(exc)
    return None
