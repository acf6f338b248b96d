"""Model clients: one protocol, metered calls, an optional response cache."""

# Names resolve on first use (PEP 562), so importing one submodule does not load them all: the CLI starts fast.
from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "ChatMessage": "atlas.llm.types",
    "Completion": "atlas.llm.types",
    "GenerationParams": "atlas.llm.types",
    "LLMClient": "atlas.llm.client",
    "LabelPrompt": "atlas.llm.classify",
    "LabelScores": "atlas.llm.types",
    "Meter": "atlas.llm.meter",
    "MeterTotals": "atlas.llm.meter",
    "ResponseCache": "atlas.llm.cache",
    "ScriptedBackend": "atlas.llm.scripted",
    "Usage": "atlas.llm.types",
    "ZeroShotClassifier": "atlas.llm.classify",
    "make_backend": "atlas.llm.factory",
    "make_llm": "atlas.llm.factory",
}

__all__ = [
    "ChatMessage",
    "Completion",
    "GenerationParams",
    "LLMClient",
    "LabelPrompt",
    "LabelScores",
    "Meter",
    "MeterTotals",
    "ResponseCache",
    "ScriptedBackend",
    "Usage",
    "ZeroShotClassifier",
    "make_backend",
    "make_llm",
]

if TYPE_CHECKING:
    from atlas.llm.cache import ResponseCache
    from atlas.llm.classify import LabelPrompt, ZeroShotClassifier
    from atlas.llm.client import LLMClient
    from atlas.llm.factory import make_backend, make_llm
    from atlas.llm.meter import Meter, MeterTotals
    from atlas.llm.scripted import ScriptedBackend
    from atlas.llm.types import ChatMessage, Completion, GenerationParams, LabelScores, Usage


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
