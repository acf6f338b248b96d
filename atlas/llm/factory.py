"""Model specs to clients: ``openai:<model>``, ``local[:<name-or-path>]``, ``scripted[:<reply>]``."""

from __future__ import annotations

from collections.abc import Sequence

from atlas.config import AtlasSettings
from atlas.errors import LLMConfigError
from atlas.llm.backend import Backend
from atlas.llm.cache import ResponseCache
from atlas.llm.client import LLMClient
from atlas.llm.meter import Meter, PriceTable
from atlas.llm.scripted import Replier, ScriptedBackend

SPEC_FORMS = "openai:<model>, local, local:smollm2-135m, local:<hf-folder>, scripted, scripted:<reply>"


def make_backend(spec: str, settings: AtlasSettings, replies: Sequence[str] | Replier | None = None) -> Backend:
    kind, _, rest = spec.partition(":")
    if kind == "openai":
        if not rest:
            raise LLMConfigError(f"model spec {spec!r} names no model; expected openai:<model>, e.g. openai:gpt-4o-mini")
        from atlas.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(rest, settings.openai)
    if kind == "local":
        from atlas.llm.local_backend import LocalBackend

        return LocalBackend(rest, settings.local, settings.model_cache_dir)
    if kind == "scripted":
        if replies is None:
            replies = [rest or "ok"]
        return ScriptedBackend(replies, model="scripted", cycle=True)
    raise LLMConfigError(f"unknown model spec {spec!r}; expected one of: {SPEC_FORMS}")


def make_llm(
    spec: str,
    settings: AtlasSettings,
    meter: Meter | None = None,
    cache: ResponseCache | bool | None = None,
    replies: Sequence[str] | Replier | None = None,
) -> LLMClient:
    """A metered client for ``spec``. ``cache=None`` follows the config; True/False force it."""
    use_cache = settings.cache.enabled if cache is None else cache
    response_cache = cache if isinstance(cache, ResponseCache) else None
    if use_cache is True and response_cache is None:
        response_cache = ResponseCache(settings.cache_path)
    backend = make_backend(spec, settings, replies)
    return LLMClient(backend, PriceTable(settings), meter=meter, cache=response_cache)
