"""Model clients: one protocol, metered calls, an optional response cache."""

from atlas.llm.cache import ResponseCache
from atlas.llm.classify import LabelPrompt, ZeroShotClassifier
from atlas.llm.client import LLMClient
from atlas.llm.factory import make_backend, make_llm
from atlas.llm.meter import Meter, MeterTotals
from atlas.llm.scripted import ScriptedBackend
from atlas.llm.types import ChatMessage, Completion, GenerationParams, LabelScores, Usage

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
